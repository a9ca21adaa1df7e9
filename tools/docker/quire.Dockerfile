# Quire on Debian 12: the engine binary, migrated at start.
FROM debian:12
RUN apt-get update && apt-get install -y --no-install-recommends \
	gcc make pkg-config libevent-dev libpq-dev libc6-dev ca-certificates \
	postgresql-client && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN make -C /src all && install -m 755 /src/build/bin/quire /usr/bin/quire
USER nobody
CMD quire migrate && exec quire run --lmtp 0.0.0.0:8024 \
	--relay "${QUIRE_RELAY:-postfix:25}"

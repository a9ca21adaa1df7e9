# Postfix in front of Quire: list mail in over SMTP, handed to Quire by
# LMTP; Quire's outgoing copies relayed back through it.
FROM debian:12
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	--no-install-recommends postfix && rm -rf /var/lib/apt/lists/*
COPY tools/docker/postfix-main.cf /etc/postfix/main.cf.quire
COPY tools/docker/transport /etc/postfix/transport
RUN cat /etc/postfix/main.cf.quire >> /etc/postfix/main.cf && \
	postmap /etc/postfix/transport
CMD ["postfix", "start-fg"]

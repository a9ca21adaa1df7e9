# Quire: build, check, run, bench, fuzz.
#
#   make            build bin/quire and the tools
#   make run        set up a private PostgreSQL under var/ and run a demo
#   make check      every test (units and integration) on a private cluster
#   make check SANITIZE=1   the same under AddressSanitizer and UBSan
#   make bench      the benchmark table
#   make fuzz       each libFuzzer target for FUZZ_SECONDS

CC	?= cc
PKGS	 = libevent libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iengine $(PKG_CFLAGS)
LDLIBS	 = $(PKG_LIBS)

ifeq ($(SANITIZE),1)
BUILD	 = build-san
CFLAGS	+= -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined
LDFLAGS	+= -fsanitize=address,undefined
else
BUILD	 = build
endif
BIN	 = $(BUILD)/bin

ENGINE_SRC  = $(filter-out engine/main.c,$(wildcard engine/*.c))
ENGINE_OBJ  = $(ENGINE_SRC:engine/%.c=$(BUILD)/engine/%.o) $(BUILD)/sql_embed.o
SQL_FILES   = $(wildcard migrations/*.sql schema/*.sql)
UNIT_SRC    = $(wildcard tests/unit/test_*.c)
UNIT_BIN    = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC    = $(wildcard tools/*.c)
TOOL_BIN    = $(TOOL_SRC:tools/%.c=$(BIN)/%)
FUZZ_SRC    = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN    = $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_SECONDS ?= 60
# Each fuzz target, built without libFuzzer, replays tests/fuzz/regress/
# in make check (named test_* so tools/check runs it with the units).
REPLAY_BIN  = $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/test_replay_%)

.PHONY: all units tools check check-units run bench fuzz clean deps
all: $(BIN)/quire $(TOOL_BIN)
units: $(UNIT_BIN) $(REPLAY_BIN)
tools: $(TOOL_BIN)

$(BUILD)/engine/%.o: engine/%.c engine/*.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/sql_embed.c: $(SQL_FILES) tools/embed-sql
	@mkdir -p $(@D)
	tools/embed-sql $@

$(BUILD)/sql_embed.o: $(BUILD)/sql_embed.c engine/sql.h
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libquire.a: $(ENGINE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BIN)/quire: $(BUILD)/engine/main.o $(BUILD)/libquire.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/%: tools/%.c $(BUILD)/libquire.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libquire.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libquire.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libquire.a \
	    $(LDLIBS) -lcmocka

$(BUILD)/tests/test_replay_%: tests/fuzz/%.c tests/fuzz/replay.c \
    $(BUILD)/libquire.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DREGRESS_DIR='"$(CURDIR)/tests/fuzz/regress/$*"' \
	    $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(BUILD)/libquire.a \
	    $(LDLIBS)

check-units: $(UNIT_BIN) $(REPLAY_BIN) $(REPLAY_BIN)
	@tools/run-units $(UNIT_BIN) $(REPLAY_BIN)

# The set-up first (packages), then the build, so that a fresh machine
# needs nothing but these targets.
check:
	@tools/deps
	@$(MAKE) --no-print-directory all units
	@tools/check $(BUILD)

run:
	@tools/deps
	@$(MAKE) --no-print-directory all
	@tools/run-demo $(BUILD)

bench:
	@tools/deps
	@$(MAKE) --no-print-directory all
	@tools/bench $(BUILD)

deps:
	@tools/deps

FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -Iengine $(PKG_CFLAGS) \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
build-fuzz/sql_embed.c: $(SQL_FILES) tools/embed-sql
	@mkdir -p $(@D)
	tools/embed-sql $@

build-fuzz/%: tests/fuzz/%.c $(ENGINE_SRC) engine/*.h build-fuzz/sql_embed.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ $< $(ENGINE_SRC) build-fuzz/sql_embed.c \
	    $(LDLIBS)

fuzz: $(FUZZ_BIN)
	@tools/fuzz $(FUZZ_SECONDS) $(FUZZ_BIN)

clean:
	rm -rf build build-san build-fuzz

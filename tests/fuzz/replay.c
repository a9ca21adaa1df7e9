/*
 * replay: run a fuzz target's entry point over saved inputs, without
 * libFuzzer, so that every input that once crashed a parser (and a few
 * that reach deep into it) is a regression test in `make check`, under
 * the sanitizers there too.
 *
 *   replay_fuzz_X [FILE|DIR]...   default: the target's regress directory
 *
 * Fails when an input aborts (the target's property checks) or when
 * there is nothing to replay: an empty regression set proves nothing.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	LLVMFuzzerInitialize(int *, char ***) __attribute__((weak));

static int
replay_file(const char *path)
{
	FILE		*f;
	struct stat	 st;
	uint8_t		*data;
	size_t		 n;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) == -1) {
		perror(path);
		if (f != NULL)
			fclose(f);
		return -1;
	}
	/* One spare byte: malloc(0) may return NULL for an empty input. */
	if ((data = malloc((size_t)st.st_size + 1)) == NULL) {
		fclose(f);
		return -1;
	}
	n = fread(data, 1, (size_t)st.st_size, f);
	fclose(f);
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	return 0;
}

/* Replay path, or every regular file directly in it; the count. */
static int
replay_path(const char *path)
{
	DIR		*d;
	struct dirent	*e;
	struct stat	 st;
	char		 file[4096];
	int		 count = 0;

	if (stat(path, &st) == -1) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path) == 0 ? 1 : -1;
	if ((d = opendir(path)) == NULL) {
		perror(path);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
		if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
			if (replay_file(file) == -1) {
				closedir(d);
				return -1;
			}
			count++;
		}
	}
	closedir(d);
	return count;
}

int
main(int argc, char **argv)
{
	const char	*dflt[] = { REGRESS_DIR };
	const char	**paths = (const char **)argv + 1;
	int		 npaths = argc - 1, total = 0, n;

	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	if (npaths == 0) {
		paths = dflt;
		npaths = 1;
	}
	for (int i = 0; i < npaths; i++) {
		if ((n = replay_path(paths[i])) == -1)
			return 1;
		total += n;
	}
	printf("replay: %d inputs from %s%s\n", total, paths[0],
	    npaths > 1 ? " and more" : "");
	return total > 0 ? 0 : 1;
}

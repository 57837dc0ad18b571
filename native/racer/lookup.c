/* A real resolver as load for the lab: N lookups of one name through the C library's
 * getaddrinfo (AF_UNSPEC, so A and AAAA as the library sends them: glibc from one socket
 * with sendmmsg, musl back to back). Built twice, against glibc and against musl.
 * Prints one line per lookup: "<ns> <ok 1|0>", and a summary on stderr. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *name = NULL;
	long count = 1000, failed = 0;
	int i;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--name"))
			name = argv[i + 1];
		else if (!strcmp(argv[i], "--count"))
			count = strtol(argv[i + 1], NULL, 10);
		else
			break;
	}
	if (!name || i != argc || count < 1) {
		fprintf(stderr, "usage: lookup --name NAME [--count N]\n");
		return 2;
	}
	for (long n = 0; n < count; n++) {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM };
		struct addrinfo *res = NULL;
		long long t0 = now_ns();
		int rc = getaddrinfo(name, NULL, &hints, &res);
		long long took = now_ns() - t0;

		if (rc)
			failed++;
		else
			freeaddrinfo(res);
		printf("%lld %d\n", took, rc == 0);
	}
	fprintf(stderr, "lookup: %ld lookups, %ld failed\n", count, failed);
	return 0;
}

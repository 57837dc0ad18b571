/* Sustained DNS query load for throughput benchmarks: T threads, each pinned to its own
 * CPU, send A queries to ADDR:PORT as fast as they can for S seconds, spread over many
 * sockets so the node sees many 5-tuples, as from many pods. Answers are not awaited:
 * what counts is how many queries the path delivers, measured at the receiving end.
 * Prints "<sent> <seconds>" on stdout. IPv4 only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define MAX_THREADS 64
#define MAX_SOCKETS 1024

static struct {
	struct sockaddr_in server;
	double seconds;
	int threads;
	int sockets; /* per thread */
} opt = { .seconds = 3, .threads = 1, .sockets = 64 };

static unsigned char query[64];
static size_t query_len;
static long long sent_by[MAX_THREADS];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* www.example.test A IN, recursion desired */
static void build_query(void)
{
	static const unsigned char name[] = "\3www\7example\4test";
	size_t off = 12;

	memset(query, 0, sizeof(query));
	query[2] = 0x01;
	query[5] = 1;
	memcpy(query + off, name, sizeof(name)); /* with its terminating root label */
	off += sizeof(name);
	query[off++] = 0;
	query[off++] = 1; /* A */
	query[off++] = 0;
	query[off++] = 1; /* IN */
	query_len = off;
}

static void *run(void *arg)
{
	int which = (int)(intptr_t)arg, fds[MAX_SOCKETS], n = 0, i;
	struct mmsghdr msgs[BATCH];
	struct iovec iov = { .iov_base = query, .iov_len = 0 };
	cpu_set_t set;
	double end;
	long long sent = 0;

	CPU_ZERO(&set);
	CPU_SET(which % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	iov.iov_len = query_len;
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	for (i = 0; i < opt.sockets; i++) {
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&opt.server, sizeof(opt.server)) < 0) {
			perror("flood: socket");
			exit(1);
		}
		fds[n++] = fd;
	}
	end = now_s() + opt.seconds;
	for (i = 0; now_s() < end; i = (i + 1) % n) {
		int r = sendmmsg(fds[i], msgs, BATCH, 0);

		if (r > 0)
			sent += r;
		else if (r < 0 && errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
			perror("flood: sendmmsg");
			exit(1);
		}
	}
	for (i = 0; i < n; i++)
		close(fds[i]);
	sent_by[which] = sent;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t tids[MAX_THREADS];
	const char *server = NULL;
	int port = 53, i;
	long long total = 0;
	double start;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--server"))
			server = argv[i + 1];
		else if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			opt.seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--threads"))
			opt.threads = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--sockets"))
			opt.sockets = atoi(argv[i + 1]);
		else
			break;
	}
	opt.server.sin_family = AF_INET;
	opt.server.sin_port = htons(port);
	if (!server || i != argc || inet_pton(AF_INET, server, &opt.server.sin_addr) != 1 || port < 1 || port > 65535 ||
	    opt.seconds <= 0 || opt.threads < 1 || opt.threads > MAX_THREADS || opt.sockets < 1 || opt.sockets > MAX_SOCKETS) {
		fprintf(stderr, "usage: flood --server IPV4 [--port 53] [--seconds S] [--threads 1-%d] [--sockets 1-%d per thread]\n",
			MAX_THREADS, MAX_SOCKETS);
		return 2;
	}
	build_query();
	start = now_s();
	for (i = 0; i < opt.threads; i++)
		pthread_create(&tids[i], NULL, run, (void *)(intptr_t)i);
	for (i = 0; i < opt.threads; i++) {
		pthread_join(tids[i], NULL);
		total += sent_by[i];
	}
	printf("%lld %.3f\n", total, now_s() - start);
	return 0;
}

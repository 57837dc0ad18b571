// SPDX-License-Identifier: Apache-2.0
/* racer: makes the conntrack race happen on purpose.
 *
 * For each pair it opens a fresh connected UDP socket (a new 5-tuple, as a resolver
 * does per lookup), and two threads pinned to different CPUs send an A and an AAAA
 * query on it at the same instant, released by a barrier. A barrier wakes the two
 * threads one after the other, tens of microseconds apart on a VM whose idle vCPU
 * must first be woken, so the first awake spins until the second is running too and
 * both send at once. This is what glibc's
 * parallel lookups look like when the two packets are processed on two CPUs.
 * The main thread then collects both answers, resending a query that timed out.
 *
 * Output: one line per pair on stdout:
 *   <A ns> <AAAA ns> <lookup ns> <A retries> <AAAA retries> <lost>
 * where a latency of -1 means never answered, lost is 0, 1 or 2 queries.
 * A summary line goes to stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QTYPE_A    1
#define QTYPE_AAAA 28

struct options {
	struct sockaddr_storage server;
	socklen_t server_len;
	const char *name;
	long pairs;
	int timeout_ms;
	int retries;
	int cpus[2];
};

struct shared {
	pthread_barrier_t start;
	pthread_barrier_t sent;
	int fd;
	int stop;
	uint16_t ids[2];
	unsigned char query[2][300];
	size_t query_len[2];
	int64_t sent_ns[2];
	/* senders that reached the starting line, two per pair */
	atomic_ulong ready;
};

static struct options opt;
static struct shared sh;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static size_t build_query(unsigned char *buf, size_t cap, uint16_t id, const char *name, uint16_t qtype)
{
	size_t off = 12, len;
	const char *p = name, *dot;

	memset(buf, 0, 12);
	buf[0] = id >> 8;
	buf[1] = id & 0xff;
	buf[2] = 0x01; /* RD */
	buf[5] = 1;    /* QDCOUNT */
	while (*p) {
		dot = strchr(p, '.');
		len = dot ? (size_t)(dot - p) : strlen(p);
		if (len == 0 || len > 63 || off + len + 6 > cap)
			return 0;
		buf[off++] = (unsigned char)len;
		memcpy(buf + off, p, len);
		off += len;
		p += len;
		if (*p == '.')
			p++;
	}
	buf[off++] = 0;
	buf[off++] = qtype >> 8;
	buf[off++] = qtype & 0xff;
	buf[off++] = 0;
	buf[off++] = 1; /* IN */
	return off;
}

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* Both senders of a pair meet here awake before either sends. Only with two CPUs: on
 * one, the spinning thread would keep the other from running. */
static void meet(void)
{
	unsigned long n, goal;

	if (opt.cpus[0] == opt.cpus[1])
		return;
	n = atomic_fetch_add(&sh.ready, 1) + 1;
	goal = (n + 1) & ~1UL;
	while (atomic_load_explicit(&sh.ready, memory_order_acquire) < goal)
		cpu_relax();
}

static void *sender(void *arg)
{
	int which = (int)(intptr_t)arg;

	pin(opt.cpus[which]);
	for (;;) {
		pthread_barrier_wait(&sh.start);
		if (sh.stop)
			return NULL;
		meet();
		sh.sent_ns[which] = now_ns();
		if (send(sh.fd, sh.query[which], sh.query_len[which], 0) < 0)
			sh.sent_ns[which] = -1;
		pthread_barrier_wait(&sh.sent);
	}
}

static int parse_server(const char *host, int port)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&opt.server;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&opt.server;

	memset(&opt.server, 0, sizeof(opt.server));
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		opt.server_len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		opt.server_len = sizeof(*v6);
		return 0;
	}
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: racer --server ADDR [--port 53] [--name NAME] [--pairs N] "
			"[--timeout-ms MS] [--retries N] [--cpus A,B]\n");
	exit(2);
}

/* Waits for the answers still missing; resends a query whose wait ran out. */
static void collect(int64_t answered[2], int retries[2])
{
	unsigned char buf[1500];
	int64_t deadline[2];
	int i;

	for (i = 0; i < 2; i++) {
		answered[i] = sh.sent_ns[i] < 0 ? -1 : 0;
		retries[i] = 0;
		deadline[i] = sh.sent_ns[i] + (int64_t)opt.timeout_ms * 1000000LL;
	}
	for (;;) {
		int64_t now = now_ns(), wait_until = INT64_MAX;
		struct pollfd pfd = { .fd = sh.fd, .events = POLLIN };
		int pending = 0;

		for (i = 0; i < 2; i++) {
			if (answered[i] != 0)
				continue;
			if (now >= deadline[i]) {
				if (retries[i] >= opt.retries) {
					answered[i] = -1;
					continue;
				}
				retries[i]++;
				send(sh.fd, sh.query[i], sh.query_len[i], 0);
				deadline[i] = now + (int64_t)opt.timeout_ms * 1000000LL;
			}
			pending++;
			if (deadline[i] < wait_until)
				wait_until = deadline[i];
		}
		if (!pending)
			return;
		if (poll(&pfd, 1, (int)((wait_until - now) / 1000000LL) + 1) <= 0)
			continue;
		ssize_t n = recv(sh.fd, buf, sizeof(buf), 0);
		if (n < 12)
			continue;
		uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
		for (i = 0; i < 2; i++)
			if (id == sh.ids[i] && answered[i] == 0)
				answered[i] = now_ns();
	}
}

int main(int argc, char **argv)
{
	const char *host = NULL;
	pthread_t threads[2];
	long pair, lost_total = 0, retried_total = 0;
	int port = 53, i;

	opt.name = "web.dnspacer.test";
	opt.pairs = 1000;
	opt.timeout_ms = 1000;
	opt.retries = 2;
	opt.cpus[0] = 0;
	opt.cpus[1] = 1;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			usage();
		if (!strcmp(a, "--server"))
			host = v;
		else if (!strcmp(a, "--port"))
			port = atoi(v);
		else if (!strcmp(a, "--name"))
			opt.name = v;
		else if (!strcmp(a, "--pairs"))
			opt.pairs = atol(v);
		else if (!strcmp(a, "--timeout-ms"))
			opt.timeout_ms = atoi(v);
		else if (!strcmp(a, "--retries"))
			opt.retries = atoi(v);
		else if (!strcmp(a, "--cpus")) {
			if (sscanf(v, "%d,%d", &opt.cpus[0], &opt.cpus[1]) != 2)
				usage();
		} else
			usage();
		i++;
	}
	if (!host || parse_server(host, port) || opt.pairs < 1 || opt.timeout_ms < 1 || port < 1 || port > 65535)
		usage();
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		opt.cpus[1] = opt.cpus[0];

	pthread_barrier_init(&sh.start, NULL, 3);
	pthread_barrier_init(&sh.sent, NULL, 3);
	for (i = 0; i < 2; i++)
		pthread_create(&threads[i], NULL, sender, (void *)(intptr_t)i);

	for (pair = 0; pair < opt.pairs; pair++) {
		int64_t answered[2];
		int retries[2];

		sh.fd = socket(opt.server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (sh.fd < 0 || connect(sh.fd, (struct sockaddr *)&opt.server, opt.server_len) < 0) {
			perror("racer: socket");
			return 1;
		}
		for (i = 0; i < 2; i++) {
			sh.ids[i] = (uint16_t)(pair * 2 + i);
			sh.query_len[i] = build_query(sh.query[i], sizeof(sh.query[i]), sh.ids[i], opt.name,
						      i == 0 ? QTYPE_A : QTYPE_AAAA);
			if (!sh.query_len[i]) {
				fprintf(stderr, "racer: bad --name %s\n", opt.name);
				return 2;
			}
		}
		pthread_barrier_wait(&sh.start);
		pthread_barrier_wait(&sh.sent);
		collect(answered, retries);
		close(sh.fd);

		int64_t lat[2], lookup = 0;
		int lost = 0;

		for (i = 0; i < 2; i++) {
			lat[i] = answered[i] > 0 ? answered[i] - sh.sent_ns[i] : -1;
			if (lat[i] < 0)
				lost++;
			else if (answered[i] - sh.sent_ns[0] > lookup)
				lookup = answered[i] - sh.sent_ns[0];
			retried_total += retries[i] > 0;
		}
		lost_total += lost;
		printf("%lld %lld %lld %d %d %d\n", (long long)lat[0], (long long)lat[1],
		       lost ? -1LL : (long long)lookup, retries[0], retries[1], lost);
	}
	sh.stop = 1;
	pthread_barrier_wait(&sh.start);
	for (i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	fprintf(stderr, "racer: %ld pairs, %ld queries retried, %ld lost\n", opt.pairs, retried_total, lost_total);
	return 0;
}

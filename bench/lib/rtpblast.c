/*
 * rtpblast: the send/receive loop of bench/lib/rtpgen.py in C, so that the load generator costs little of
 * the 2-core box and the relay, not the generator, is what the steps measure. rtpgen.py compiles it
 * (cc -O2 -o bench/out/rtpblast bench/lib/rtpblast.c) when a C compiler is there, drives it, and does the rest
 * (finding the relay ports, engine CPU, kernel drops and queues, JSON). Same traffic as the Python loop:
 * 172-byte RTP packets, one per flow every 20 ms, flows spread evenly over 1 ms ticks; bytes 12-19 carry
 * the send time (CLOCK_MONOTONIC, a double) for the one-way latency.
 *
 * usage: rtpblast HOST N_SOCKETS       then on stdin:
 *   flows PORT PORT ...\n     destination ports; flow f is sent from socket f % N_SOCKETS (once, first)
 *   step N SECONDS\n          warm up and run flows 0..N-1; prints "go" when the paced run starts, then
 *                             "result SENT RECEIVED SEND_ERRORS ELAPSED_S WINDOW_S P50_MS P99_MS MAX_MS CPU_S"
 *   quit\n
 * After "flows" it prints "ready PORT,PORT,..." (its sockets' local ports).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PKT 172
#define TICKS 20        /* 1 ms ticks per 20 ms packet time */
#define BINS 20000      /* 0.1 ms latency bins up to 2 s */
#define BATCH 64

static int nsock, *socks, nflows, *fport;
static struct sockaddr_in *dest;
static int ep;
static long hist[BINS];
static int measuring;

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static long drain(int timeout_ms) {
	struct epoll_event ev[256];
	static char bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	long got = 0;
	int n = epoll_wait(ep, ev, 256, timeout_ms);
	for (int i = 0; i < n; i++) {
		int fd = ev[i].data.fd;
		for (;;) {
			for (int k = 0; k < BATCH; k++) {
				iov[k].iov_base = bufs[k];
				iov[k].iov_len = sizeof bufs[k];
				memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
				msgs[k].msg_hdr.msg_iov = &iov[k];
				msgs[k].msg_hdr.msg_iovlen = 1;
			}
			int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
			if (r <= 0)
				break;
			got += r;
			if (measuring) {
				double t = now();
				for (int k = 0; k < r; k++) {
					double sent;
					if (msgs[k].msg_len < 20)
						continue;
					memcpy(&sent, bufs[k] + 12, sizeof sent);
					long b = (long)((t - sent) * 10000);
					hist[b >= 0 && b < BINS ? b : BINS - 1]++;
				}
			}
			if (r < BATCH)
				break;
		}
	}
	return got;
}

static double pct(double q) {
	long total = 0, acc = 0;
	for (int i = 0; i < BINS; i++)
		total += hist[i];
	if (!total)
		return -1;
	for (int i = 0; i < BINS; i++) {
		acc += hist[i];
		if (acc >= q * total)
			return (i + 1) / 10.0;
	}
	return -1;
}

static void step(int n, double seconds) {
	unsigned char pkt[PKT];
	memset(pkt, 0xff, sizeof pkt);
	memset(pkt, 0, 20);
	pkt[0] = 0x80;
	pkt[3] = 1;
	if (n > nflows)
		n = nflows;
	/* warm-up: latch both relay sides of every call on our sockets */
	measuring = 0;
	for (int round = 0; round < 2; round++) {
		for (int f = 0; f < n; f++)
			sendto(socks[f % nsock], pkt, PKT, 0, (struct sockaddr *)&dest[f], sizeof dest[f]);
		double end = now() + 0.2;
		while (now() < end)
			drain(50);
	}
	for (double end = now() + 0.3; now() < end;)
		drain(50);
	memset(hist, 0, sizeof hist);
	measuring = 1;
	printf("go\n"); /* the driver samples the engine's CPU from here */
	fflush(stdout);
	long sent = 0, received = 0, errors = 0;
	long total_ticks = (long)(seconds * 1000 + 0.5), tick = 0;
	double c0 = cpu(), start = now();
	while (tick < total_ticks) {
		long due = (long)((now() - start) * 1000) + 1;
		if (due > total_ticks)
			due = total_ticks;
		while (tick < due) {
			double t = now();
			memcpy(pkt + 12, &t, sizeof t);
			for (int f = (int)(tick % TICKS); f < n; f += TICKS) {
				if (sendto(socks[f % nsock], pkt, PKT, MSG_DONTWAIT, (struct sockaddr *)&dest[f], sizeof dest[f]) < 0)
					errors++;
				else
					sent++;
			}
			tick++;
		}
		/* sleep in epoll until the next tick is due (rounded up: a 0 ms timeout would spin) */
		double wait = start + tick / 1000.0 - now();
		received += drain(wait > 0 ? (int)(wait * 1000) + 1 : 0);
	}
	double elapsed = now() - start;
	double last = now(), quiet = last, stop = last + 0.5;
	for (;;) {
		long got = drain(50);
		received += got;
		double t = now();
		if (got)
			quiet = t;
		if (t >= stop && (t - quiet >= 0.2 || t - last >= 3.0))
			break;
	}
	double window = now() - start;
	long top = -1;
	for (int i = 0; i < BINS; i++)
		if (hist[i])
			top = i;
	printf("result %ld %ld %ld %.4f %.4f %.1f %.1f %.1f %.4f\n", sent, received, errors, elapsed, window, pct(0.5),
	       pct(0.99), top >= 0 ? (top + 1) / 10.0 : -1.0, cpu() - c0);
	fflush(stdout);
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: rtpblast HOST N_SOCKETS\n");
		return 2;
	}
	const char *host = argv[1];
	nsock = atoi(argv[2]);
	socks = calloc(nsock, sizeof *socks);
	ep = epoll_create1(0);
	for (int i = 0; i < nsock; i++) {
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		int sz = 4 << 20;
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
		setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
		struct sockaddr_in a = {.sin_family = AF_INET};
		inet_pton(AF_INET, host, &a.sin_addr);
		if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
			perror("bind");
			return 1;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
		epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
		socks[i] = s;
	}
	static char line[1 << 20];
	while (fgets(line, sizeof line, stdin)) {
		if (!strncmp(line, "flows", 5)) {
			int cap = 1024;
			fport = malloc(cap * sizeof *fport);
			nflows = 0;
			for (char *tok = strtok(line + 5, " \n"); tok; tok = strtok(NULL, " \n")) {
				if (nflows == cap)
					fport = realloc(fport, (cap *= 2) * sizeof *fport);
				fport[nflows++] = atoi(tok);
			}
			dest = calloc(nflows, sizeof *dest);
			for (int f = 0; f < nflows; f++) {
				dest[f].sin_family = AF_INET;
				dest[f].sin_port = htons(fport[f]);
				inet_pton(AF_INET, host, &dest[f].sin_addr);
			}
			printf("ready ");
			for (int i = 0; i < nsock; i++) {
				struct sockaddr_in a;
				socklen_t l = sizeof a;
				getsockname(socks[i], (struct sockaddr *)&a, &l);
				printf(i ? ",%d" : "%d", ntohs(a.sin_port));
			}
			printf("\n");
			fflush(stdout);
		} else if (!strncmp(line, "step", 4)) {
			int n;
			double secs;
			if (sscanf(line + 4, "%d %lf", &n, &secs) == 2)
				step(n, secs);
		} else if (!strncmp(line, "quit", 4)) {
			break;
		}
	}
	return 0;
}

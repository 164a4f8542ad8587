/*
 * loadgen.c — a long-poll load generator for comet-bridge (loopback only).
 *
 * One process, one epoll loop, one keep-alive connection per session:
 * each session sets up ({"rid":R,"subscribe":[C]}) and then always keeps
 * one poll held, re-polling with the next rid as soon as an answer comes.
 * Packets are expected to carry {"t": <send time, µs since the epoch>};
 * every packet's latency (receive time minus t) is recorded.
 *
 *   loadgen --port P --sessions N --channel C [--expect K] [--duration S]
 *
 * Stops when every session has received K packets, or after S seconds.
 * Prints "key value" lines: sessions, ready, packets, p50_us, p99_us,
 * max_us, errors.  While running it prints "ready N" once every session
 * holds its first poll, so that a script knows when to publish.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 16384

typedef struct Conn
{
	int			fd;
	unsigned long long rid;
	char		sid[128];
	char		in[BUF_SIZE];
	size_t		in_len;
	int			received;
	int			polling;		/* a poll is outstanding */
} Conn;

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
compare_ll(const void *a, const void *b)
{
	long long	x = *(const long long *) a;
	long long	y = *(const long long *) b;

	return (x > y) - (x < y);
}

static int
send_all(int fd, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = send(fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;			/* small requests: the buffer drains at once */
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t) n;
	}
	return 0;
}

static int
post(Conn *c, int port, const char *body)
{
	char		request[1024];
	int			n = snprintf(request, sizeof(request),
							 "POST /comet HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
							 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
							 port, strlen(body), body);

	return send_all(c->fd, request, (size_t) n);
}

static int
poll_next(Conn *c, int port)
{
	char		body[256];

	snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"rid\":%llu}", c->sid, ++c->rid);
	c->polling = 1;
	return post(c, port, body);
}

/* A complete response in c->in: its body start and length, or 0. */
static int
response_complete(Conn *c, char **body, size_t *body_len, size_t *total)
{
	char	   *end;
	char	   *cl;
	size_t		header_len;
	size_t		content_length;

	c->in[c->in_len] = '\0';
	end = strstr(c->in, "\r\n\r\n");
	if (end == NULL)
		return 0;
	header_len = (size_t) (end - c->in) + 4;
	cl = strcasestr(c->in, "Content-Length:");
	if (cl == NULL || cl > end)
		return 0;
	content_length = strtoul(cl + 15, NULL, 10);
	if (c->in_len < header_len + content_length)
		return 0;
	*body = c->in + header_len;
	*body_len = content_length;
	*total = header_len + content_length;
	return 1;
}

int
main(int argc, char **argv)
{
	int			port = 0;
	int			sessions = 1;
	int			expect = 1;
	int			duration = 30;
	const char *channel = "bench";
	Conn	   *conns;
	int			epfd;
	long long  *latencies;
	size_t		nlat = 0;
	size_t		cap_lat;
	int			ready = 0;
	int			done = 0;
	int			errors = 0;
	int			announced = 0;
	long long	deadline;
	struct rlimit limit;
	int			i;

	for (i = 1; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--port") == 0)
			port = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--sessions") == 0)
			sessions = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--expect") == 0)
			expect = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--duration") == 0)
			duration = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--channel") == 0)
			channel = argv[i + 1];
	}
	if (port <= 0 || sessions < 1 || sessions > 100000 || duration < 1 || duration > 600)
	{
		fprintf(stderr, "usage: loadgen --port P --sessions N [--channel C] [--expect K] [--duration S]\n");
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0)
	{
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
	conns = calloc((size_t) sessions, sizeof(Conn));
	cap_lat = (size_t) sessions * (size_t) expect + 16;
	latencies = malloc(sizeof(long long) * cap_lat);
	epfd = epoll_create1(0);
	if (conns == NULL || latencies == NULL || epfd < 0)
		return 1;

	/* connect and set up every session (blocking connect on loopback) */
	for (i = 0; i < sessions; i++)
	{
		struct sockaddr_in addr = {0};
		struct epoll_event ev = {0};
		char		body[256];
		int			one = 1;

		addr.sin_family = AF_INET;
		addr.sin_port = htons((uint16_t) port);
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);	/* loopback only */
		conns[i].fd = socket(AF_INET, SOCK_STREAM, 0);
		if (conns[i].fd < 0 || connect(conns[i].fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
		{
			fprintf(stderr, "loadgen: connection %d: %s\n", i, strerror(errno));
			sessions = i;
			break;
		}
		setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
		conns[i].rid = (unsigned long long) (i + 1) * 1000;
		snprintf(body, sizeof(body), "{\"rid\":%llu,\"subscribe\":[\"%s\"],\"wait\":60}",
				 conns[i].rid, channel);
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t) i;
		epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i].fd, &ev);
		if (post(&conns[i], port, body) != 0)
			errors++;
	}
	printf("sessions %d\n", sessions);
	fflush(stdout);

	deadline = now_us() + (long long) duration * 1000000;
	while (now_us() < deadline && done < sessions)
	{
		struct epoll_event events[256];
		int			n = epoll_wait(epfd, events, 256, 100);
		int			k;

		for (k = 0; k < n; k++)
		{
			Conn	   *c = &conns[events[k].data.u32];
			ssize_t		r = recv(c->fd, c->in + c->in_len, BUF_SIZE - 1 - c->in_len, 0);
			char	   *body;
			size_t		body_len;
			size_t		total;

			if (r <= 0)
			{
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				errors++;
				epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
				continue;
			}
			c->in_len += (size_t) r;
			while (response_complete(c, &body, &body_len, &total))
			{
				long long	t_recv = now_us();
				char	   *p;
				char		saved = body[body_len];

				body[body_len] = '\0';
				if (strncmp(c->in, "HTTP/1.1 200", 12) != 0)
					errors++;
				if (c->sid[0] == '\0')
				{
					char	   *sid = strstr(body, "\"sid\":\"");

					if (sid != NULL)
						sscanf(sid + 7, "%127[^\"]", c->sid);
				}
				for (p = body; (p = strstr(p, "\"t\":")) != NULL; p += 4)
				{
					long long	t = atoll(p + 4);

					if (nlat < cap_lat)
						latencies[nlat++] = t_recv - t;
					if (++c->received == expect)
						done++;
				}
				body[body_len] = saved;
				memmove(c->in, c->in + total, c->in_len - total);
				c->in_len -= total;
				if (c->polling == 0 && c->sid[0])
					ready++;
				if (c->sid[0] && poll_next(c, port) != 0)
					errors++;
			}
		}
		if (!announced && ready >= sessions)
		{
			/* every session has answered its setup and holds a poll */
			printf("ready %d\n", ready);
			fflush(stdout);
			announced = 1;
		}
	}

	qsort(latencies, nlat, sizeof(long long), compare_ll);
	printf("ready %d\npackets %zu\nerrors %d\ncomplete %d\n", ready, nlat, errors, done);
	if (nlat > 0)
		printf("p50_us %lld\np99_us %lld\nmax_us %lld\n",
			   latencies[nlat / 2], latencies[(nlat * 99) / 100 < nlat ? (nlat * 99) / 100 : nlat - 1],
			   latencies[nlat - 1]);
	for (i = 0; i < sessions; i++)
		close(conns[i].fd);
	return errors > 0 ? 1 : 0;
}

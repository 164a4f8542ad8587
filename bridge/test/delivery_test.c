/*
 * delivery_test.c — per-channel delivery queues: a packet is published at
 * once when its channel has nothing waiting, queues behind a delivery that
 * waits for the database otherwise, and a waiting channel never holds up
 * another.  Packets are checked by what was published, in order.
 */
#include "../delivery.h"

#include <stdio.h>
#include <string.h>

#include "unit.h"

#define MAX_PUBLISHED 512

typedef struct Published
{
	char		log[MAX_PUBLISHED][80];
	int			n;
	int			dropped;
} Published;

static void
record(void *ctx, Packet *packet)
{
	Published  *p = ctx;

	if (p->n < MAX_PUBLISHED)
		snprintf(p->log[p->n++], sizeof(p->log[0]), "%s:%lld", packet->channel,
				 (long long) packet->seq);
}

static void
drop(void *ctx, Delivery *delivery)
{
	Published  *p = ctx;

	(void) delivery;
	p->dropped++;
}

static Packet *
durable(const char *channel, int64_t seq)
{
	return packet_new(channel, seq, "{}", 2);
}

/* Whether the log from index `from` on is exactly the given entries. */
static bool
log_is(const Published *p, int from, const char *const *want, int nwant)
{
	int			i;

	if (p->n - from != nwant)
		return false;
	for (i = 0; i < nwant; i++)
		if (strcmp(p->log[from + i], want[i]) != 0)
			return false;
	return true;
}

int
main(void)
{
	Published	p = {0};
	DeliveryQueues *q = delivery_queues_create(record, &p);
	Delivery   *wait_a;
	Delivery   *wait_a2;
	Delivery   *waits[200];
	char		name[32];
	int			i;
	bool		ordered;

	delivery_publish(q, durable("a", 1));
	UNIT_CHECK(log_is(&p, 0, (const char *[]) {"a:1"}, 1) &&
			   delivery_channels_waiting(q) == 0,
			   "with nothing waiting a packet is published at once, and no queue is made");

	UNIT_CHECK(delivery_upto(q, "a") == -1, "a channel with nothing waiting has no upto");
	wait_a = delivery_wait(q, "a", 2);
	UNIT_CHECK(delivery_upto(q, "a") == 2, "a replay in flight says how far it reads");
	delivery_publish(q, durable("a", 3));
	UNIT_CHECK(delivery_upto(q, "a") == 3, "a packet queued behind it raises that");
	delivery_publish(q, durable("b", 1));
	UNIT_CHECK(log_is(&p, 1, (const char *[]) {"b:1"}, 1),
			   "behind a waiting delivery a packet of the same channel waits; another channel's does not");
	UNIT_CHECK(delivery_channels_waiting(q) == 1 && delivery_not_ready(q) == 1 &&
			   strcmp(delivery_channel(wait_a), "a") == 0,
			   "one channel waits, for one delivery");

	wait_a2 = delivery_wait(q, "a", 4);
	delivery_publish(q, durable("a", 5));
	delivery_add(wait_a2, durable("a", 4));
	delivery_ready(q, wait_a2);
	UNIT_CHECK(p.n == 2 && delivery_not_ready(q) == 1,
			   "a later delivery that is ready first still waits for the earlier one");

	delivery_add(wait_a, durable("a", 2));
	delivery_ready(q, wait_a);
	UNIT_CHECK(log_is(&p, 2, (const char *[]) {"a:2", "a:3", "a:4", "a:5"}, 4),
			   "once the first is ready everything queued is published, in order");
	UNIT_CHECK(delivery_channels_waiting(q) == 0 && delivery_not_ready(q) == 0 &&
			   delivery_upto(q, "a") == -1,
			   "and the channel's queue is gone");

	delivery_publish(q, durable("a", 6));
	UNIT_CHECK(log_is(&p, 6, (const char *[]) {"a:6"}, 1),
			   "afterwards the channel publishes at once again");

	/* many channels waiting at once (a catch-up after a reconnect) */
	for (i = 0; i < 200; i++)
	{
		snprintf(name, sizeof(name), "ch%d", i);
		waits[i] = delivery_wait(q, name, 1);
		delivery_publish(q, durable(name, 2));
	}
	UNIT_CHECK(delivery_channels_waiting(q) == 200 && p.n == 7,
			   "200 channels wait, each on its own queue");
	for (i = 199; i >= 0; i--)
	{
		snprintf(name, sizeof(name), "ch%d", i);
		delivery_add(waits[i], durable(name, 1));
		delivery_ready(q, waits[i]);
	}
	ordered = p.n == 7 + 400;
	for (i = 0; ordered && i < 200; i++)
	{
		char		want[80];

		snprintf(want, sizeof(want), "ch%d:1", 199 - i);
		ordered = strcmp(p.log[7 + 2 * i], want) == 0;
		snprintf(want, sizeof(want), "ch%d:2", 199 - i);
		ordered = ordered && strcmp(p.log[8 + 2 * i], want) == 0;
	}
	UNIT_CHECK(ordered && delivery_channels_waiting(q) == 0,
			   "each is released by its own replay, 1 before 2, in any channel order");

	wait_a = delivery_wait(q, "a", 7);
	delivery_publish(q, durable("a", 8));
	delivery_wait(q, "z", 1);
	delivery_queues_destroy(q, drop, &p);
	UNIT_CHECK(p.dropped == 2 && p.n == 407,
			   "destroying drops the deliveries still waiting and publishes nothing");
	return unit_done();
}

/*
 * delivery.h — per-channel delivery queues: packets reach the channel table
 * in each channel's seq order, and one channel waiting for the database
 * never holds up another.
 *
 * Most NOTIFYs carry their packet and are published at once.  Some must
 * first be read from the packet table (a wake-up without data, a catch-up
 * after a reconnect, a range of missed seqs): such a Delivery is queued not
 * ready, and every later packet of the same channel queues behind it until
 * it is ready.  A channel with nothing waiting has no queue at all, so the
 * common path allocates nothing here.
 */
#ifndef COMET_DELIVERY_H
#define COMET_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "packet.h"

typedef struct Delivery
{
	struct Delivery *next;		/* in its channel's queue */
	struct DeliveryQueue *queue;
	bool		ready;
	Packet	  **packets;
	size_t		npackets;
	void	   *owner;			/* the caller's (a replay in flight) */
} Delivery;

typedef struct DeliveryQueues DeliveryQueues;

/* publish is called for every packet, in order within a channel. */
DeliveryQueues *delivery_queues_create(void (*publish) (void *ctx, Packet *packet),
									   void *ctx);
/*
 * Frees every queue and the packets still in it; drop (if not NULL) is
 * called first for each delivery still waiting, to release its owner.
 */
void		delivery_queues_destroy(DeliveryQueues *queues,
									void (*drop) (void *ctx, Delivery *delivery),
									void *ctx);

/*
 * Publish packet now if its channel has nothing waiting, else queue it
 * behind what waits.  Takes over the caller's reference.
 */
void		delivery_publish(DeliveryQueues *queues, Packet *packet);
/*
 * A delivery for channel that is not ready yet, which will hold the
 * channel's durable packets up to seq upto; packets go in with
 * delivery_add.
 */
Delivery   *delivery_wait(DeliveryQueues *queues, const char *channel, int64_t upto);
/*
 * The highest seq the channel's queue holds or waits for (a replay in
 * flight); -1 when nothing waits on the channel.
 */
int64_t		delivery_upto(const DeliveryQueues *queues, const char *channel);
/* Takes over the caller's reference. */
void		delivery_add(Delivery *delivery, Packet *packet);
const char *delivery_channel(const Delivery *delivery);
/*
 * The delivery has all its packets: publish them, and whatever queued
 * behind them up to the next delivery not ready.
 */
void		delivery_ready(DeliveryQueues *queues, Delivery *delivery);

/* Channels with something waiting, and deliveries not yet ready. */
size_t		delivery_channels_waiting(const DeliveryQueues *queues);
size_t		delivery_not_ready(const DeliveryQueues *queues);

#endif							/* COMET_DELIVERY_H */

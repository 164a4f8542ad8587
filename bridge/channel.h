/*
 * channel.h — the channel table: which sessions subscribe to which
 * channels, and handing each published packet to every subscriber.
 *
 * The first subscription to a channel asks for a LISTEN, the last
 * unsubscription for an UNLISTEN (through ChannelHooks), so the database
 * connection listens on exactly the channels some session needs.  Each
 * channel also remembers the last durable seq published on it, which the
 * database side uses to drop duplicates and to catch up after a reconnect.
 * Subscribing and unsubscribing are O(1); publishing is O(subscribers).
 */
#ifndef COMET_CHANNEL_H
#define COMET_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "packet.h"

typedef struct Channel Channel;
typedef struct ChannelTable ChannelTable;

/* One session's subscription to one channel; owned by the table. */
typedef struct Subscription
{
	Channel    *channel;
	size_t		index;			/* position in the channel's subscribers */
	void	   *subscriber;		/* the session, opaque here */
	/*
	 * Durable packets up to this seq are not delivered to this subscriber
	 * (it has them from a replay, or they precede its position); -1: none.
	 */
	int64_t		floor;
} Subscription;

typedef struct ChannelHooks
{
	void		(*first_subscriber) (void *ctx, const char *channel);	/* LISTEN */
	void		(*last_unsubscribed) (void *ctx, const char *channel);	/* UNLISTEN */
	/* may unsubscribe this subscriber (and no other) */
	void		(*deliver) (void *ctx, void *subscriber, Packet *packet);
	void	   *ctx;
} ChannelHooks;

ChannelTable *channel_table_create(const ChannelHooks *hooks);
/* Frees the table; every subscription must have been removed. */
void		channel_table_destroy(ChannelTable *table);

/* Subscribe; a second subscription of the same subscriber is allowed. */
Subscription *channel_subscribe(ChannelTable *table, const char *name,
								void *subscriber);
/* Remove and free a subscription. */
void		channel_unsubscribe(ChannelTable *table, Subscription *subscription);
const char *channel_name(const Channel *channel);

/*
 * Hand packet to every subscriber of packet->channel.  A durable packet
 * (seq >= 0) whose seq is not above the channel's last seq is a duplicate
 * and is dropped, and one not above a subscriber's floor skips that
 * subscriber.  Returns how many subscribers got it.
 */
size_t		channel_publish(ChannelTable *table, Packet *packet);

/* The last durable seq published on a channel; -1 if unknown or none. */
int64_t		channel_last_seq(ChannelTable *table, const char *name);
/*
 * Give a channel its starting point (comet.last_seq once the LISTEN took
 * effect) if it has none yet; a channel already delivering keeps its own.
 */
void		channel_set_last_seq(ChannelTable *table, const char *name, int64_t seq);

/* Whether the LISTEN for a channel has taken effect (false if unknown). */
bool		channel_is_listening(ChannelTable *table, const char *name);
void		channel_set_listening(ChannelTable *table, const char *name, bool listening);
/* Forget every LISTEN (the connection was lost). */
void		channel_clear_listening(ChannelTable *table);

size_t		channel_count(const ChannelTable *table);
size_t		channel_subscribers(ChannelTable *table, const char *name);

/* Call fn for every channel with subscribers (re-LISTEN, catch-up). */
void		channel_foreach(ChannelTable *table,
							void (*fn) (void *arg, const char *name, int64_t last_seq),
							void *arg);

#endif							/* COMET_CHANNEL_H */

/*
 * channel.c — the channel table: a hash table of channels by name, each
 * with an array of subscriptions (swap-remove keeps unsubscribing O(1)).
 * A channel exists exactly while it has subscribers.
 */
#include "channel.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hash.h"
#include "mem.h"

struct Channel
{
	char		name[PROTO_CHANNEL_MAX + 1];
	uint64_t	hash;
	Channel    *next;			/* in its hash bucket */
	Subscription **subscribers;
	size_t		nsubscribers;
	size_t		capacity;
	int64_t		last_seq;
	bool		listening;		/* the LISTEN has taken effect */
	bool		publishing;		/* channel_publish is walking subscribers */
	bool		removed;		/* emptied while publishing: free afterwards */
};

struct ChannelTable
{
	ChannelHooks hooks;
	Channel   **buckets;
	size_t		nbuckets;		/* a power of two */
	size_t		nchannels;
};

ChannelTable *
channel_table_create(const ChannelHooks *hooks)
{
	ChannelTable *table = mem_alloc(sizeof(ChannelTable));

	table->hooks = *hooks;
	table->nbuckets = 64;
	table->buckets = mem_alloc(sizeof(Channel *) * table->nbuckets);
	return table;
}

void
channel_table_destroy(ChannelTable *table)
{
	if (table == NULL)
		return;
	free(table->buckets);
	free(table);
}

static Channel *
channel_find(const ChannelTable *table, const char *name, uint64_t hash)
{
	Channel    *channel = table->buckets[hash & (table->nbuckets - 1)];

	for (; channel != NULL; channel = channel->next)
		if (channel->hash == hash && strcmp(channel->name, name) == 0)
			return channel;
	return NULL;
}

static void
channel_table_grow(ChannelTable *table)
{
	size_t		nbuckets = table->nbuckets * 2;
	Channel   **buckets = mem_alloc(sizeof(Channel *) * nbuckets);
	size_t		i;

	for (i = 0; i < table->nbuckets; i++)
	{
		Channel    *channel = table->buckets[i];

		while (channel != NULL)
		{
			Channel    *next = channel->next;
			size_t		b = channel->hash & (nbuckets - 1);

			channel->next = buckets[b];
			buckets[b] = channel;
			channel = next;
		}
	}
	free(table->buckets);
	table->buckets = buckets;
	table->nbuckets = nbuckets;
}

Subscription *
channel_subscribe(ChannelTable *table, const char *name, void *subscriber)
{
	uint64_t	hash = hash_name(name);
	Channel    *channel = channel_find(table, name, hash);
	Subscription *subscription;

	if (channel == NULL)
	{
		size_t		b;

		if (table->nchannels + 1 > table->nbuckets)
			channel_table_grow(table);
		channel = mem_alloc(sizeof(Channel));
		snprintf(channel->name, sizeof(channel->name), "%s", name);
		channel->hash = hash;
		channel->last_seq = -1;
		b = hash & (table->nbuckets - 1);
		channel->next = table->buckets[b];
		table->buckets[b] = channel;
		table->nchannels++;
		if (table->hooks.first_subscriber)
			table->hooks.first_subscriber(table->hooks.ctx, channel->name);
	}
	if (channel->nsubscribers == channel->capacity)
	{
		size_t		capacity = channel->capacity ? channel->capacity * 2 : 4;
		Subscription **grown = mem_realloc(channel->subscribers,
									   sizeof(Subscription *) * capacity);
		channel->subscribers = grown;
		channel->capacity = capacity;
	}
	subscription = mem_alloc(sizeof(Subscription));
	subscription->channel = channel;
	subscription->index = channel->nsubscribers;
	subscription->subscriber = subscriber;
	subscription->floor = -1;
	channel->subscribers[channel->nsubscribers++] = subscription;
	return subscription;
}

static void
channel_remove(ChannelTable *table, Channel *channel)
{
	Channel   **link = &table->buckets[channel->hash & (table->nbuckets - 1)];

	while (*link != channel)
		link = &(*link)->next;
	*link = channel->next;
	table->nchannels--;
	if (table->hooks.last_unsubscribed)
		table->hooks.last_unsubscribed(table->hooks.ctx, channel->name);
	if (channel->publishing)
	{
		channel->removed = true;	/* channel_publish frees it */
		return;
	}
	free(channel->subscribers);
	free(channel);
}

void
channel_unsubscribe(ChannelTable *table, Subscription *subscription)
{
	Channel    *channel = subscription->channel;
	size_t		last = channel->nsubscribers - 1;

	/* move the last subscription into the hole */
	channel->subscribers[subscription->index] = channel->subscribers[last];
	channel->subscribers[subscription->index]->index = subscription->index;
	channel->nsubscribers--;
	free(subscription);
	if (channel->nsubscribers == 0)
		channel_remove(table, channel);
}

const char *
channel_name(const Channel *channel)
{
	return channel->name;
}

size_t
channel_publish(ChannelTable *table, Packet *packet)
{
	Channel    *channel = channel_find(table, packet->channel,
									   hash_name(packet->channel));
	size_t		delivered = 0;
	size_t		i;

	if (channel == NULL)
		return 0;
	if (packet->seq >= 0)
	{
		if (channel->last_seq >= 0 && packet->seq <= channel->last_seq)
			return 0;
		channel->last_seq = packet->seq;
	}

	/*
	 * A delivery may end its own session (a full queue), which unsubscribes
	 * that subscriber only: walking from the end, the subscriber moved into
	 * its place has been served already, so nobody is skipped or served
	 * twice.  The channel is freed here if that emptied it.
	 */
	channel->publishing = true;
	for (i = channel->nsubscribers; i > 0; i--)
	{
		Subscription *subscription;

		if (i - 1 >= channel->nsubscribers)
			continue;
		subscription = channel->subscribers[i - 1];
		if (packet->seq >= 0 && packet->seq <= subscription->floor)
			continue;
		table->hooks.deliver(table->hooks.ctx, subscription->subscriber, packet);
		delivered++;
	}
	channel->publishing = false;
	if (channel->removed)
	{
		free(channel->subscribers);
		free(channel);
	}
	return delivered;
}

int64_t
channel_last_seq(ChannelTable *table, const char *name)
{
	Channel    *channel = channel_find(table, name, hash_name(name));

	return channel ? channel->last_seq : -1;
}

void
channel_set_last_seq(ChannelTable *table, const char *name, int64_t seq)
{
	Channel    *channel = channel_find(table, name, hash_name(name));

	/* only a channel nothing was published on yet takes a starting point */
	if (channel != NULL && channel->last_seq < 0)
		channel->last_seq = seq;
}

bool
channel_is_listening(ChannelTable *table, const char *name)
{
	Channel    *channel = channel_find(table, name, hash_name(name));

	return channel != NULL && channel->listening;
}

void
channel_set_listening(ChannelTable *table, const char *name, bool listening)
{
	Channel    *channel = channel_find(table, name, hash_name(name));

	if (channel != NULL)
		channel->listening = listening;
}

void
channel_clear_listening(ChannelTable *table)
{
	size_t		i;

	for (i = 0; i < table->nbuckets; i++)
	{
		Channel    *channel;

		for (channel = table->buckets[i]; channel != NULL; channel = channel->next)
			channel->listening = false;
	}
}

size_t
channel_count(const ChannelTable *table)
{
	return table->nchannels;
}

size_t
channel_subscribers(ChannelTable *table, const char *name)
{
	Channel    *channel = channel_find(table, name, hash_name(name));

	return channel ? channel->nsubscribers : 0;
}

void
channel_foreach(ChannelTable *table,
				void (*fn) (void *arg, const char *name, int64_t last_seq),
				void *arg)
{
	size_t		i;

	for (i = 0; i < table->nbuckets; i++)
	{
		Channel    *channel;

		for (channel = table->buckets[i]; channel != NULL; channel = channel->next)
			fn(arg, channel->name, channel->last_seq);
	}
}

/*
 * delivery.c — per-channel delivery queues (see delivery.h): a hash table
 * of the channels that have something waiting, each a FIFO of deliveries.
 * A queue exists exactly while its channel has a delivery not yet
 * published.
 */
#include "delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mem.h"

typedef struct DeliveryQueue
{
	struct DeliveryQueue *next; /* in its hash bucket */
	uint64_t	hash;
	char		channel[PROTO_CHANNEL_MAX + 1];
	Delivery   *head;
	Delivery   *tail;
	int64_t		upto;			/* highest seq queued or being read, -1 */
} DeliveryQueue;

struct DeliveryQueues
{
	void		(*publish) (void *ctx, Packet *packet);
	void	   *ctx;
	DeliveryQueue **buckets;
	size_t		nbuckets;		/* a power of two */
	size_t		nqueues;
	size_t		not_ready;
};

DeliveryQueues *
delivery_queues_create(void (*publish) (void *ctx, Packet *packet), void *ctx)
{
	DeliveryQueues *queues = mem_alloc(sizeof(DeliveryQueues));

	queues->publish = publish;
	queues->ctx = ctx;
	queues->nbuckets = 64;
	queues->buckets = mem_alloc(sizeof(DeliveryQueue *) * queues->nbuckets);
	return queues;
}

static void
delivery_free(Delivery *delivery)
{
	size_t		i;

	for (i = 0; i < delivery->npackets; i++)
		packet_unref(delivery->packets[i]);
	free(delivery->packets);
	free(delivery);
}

void
delivery_queues_destroy(DeliveryQueues *queues,
						void (*drop) (void *ctx, Delivery *delivery), void *ctx)
{
	size_t		i;

	if (queues == NULL)
		return;
	for (i = 0; i < queues->nbuckets; i++)
		while (queues->buckets[i] != NULL)
		{
			DeliveryQueue *queue = queues->buckets[i];

			queues->buckets[i] = queue->next;
			while (queue->head != NULL)
			{
				Delivery   *delivery = queue->head;

				queue->head = delivery->next;
				if (!delivery->ready && drop != NULL)
					drop(ctx, delivery);
				delivery_free(delivery);
			}
			free(queue);
		}
	free(queues->buckets);
	free(queues);
}

static DeliveryQueue *
queue_find(const DeliveryQueues *queues, const char *channel, uint64_t hash)
{
	DeliveryQueue *queue = queues->buckets[hash & (queues->nbuckets - 1)];

	for (; queue != NULL; queue = queue->next)
		if (queue->hash == hash && strcmp(queue->channel, channel) == 0)
			return queue;
	return NULL;
}

static void
queues_grow(DeliveryQueues *queues)
{
	size_t		nbuckets = queues->nbuckets * 2;
	DeliveryQueue **buckets = mem_alloc(sizeof(DeliveryQueue *) * nbuckets);
	size_t		i;

	for (i = 0; i < queues->nbuckets; i++)
		while (queues->buckets[i] != NULL)
		{
			DeliveryQueue *queue = queues->buckets[i];

			queues->buckets[i] = queue->next;
			queue->next = buckets[queue->hash & (nbuckets - 1)];
			buckets[queue->hash & (nbuckets - 1)] = queue;
		}
	free(queues->buckets);
	queues->buckets = buckets;
	queues->nbuckets = nbuckets;
}

static DeliveryQueue *
queue_get(DeliveryQueues *queues, const char *channel)
{
	uint64_t	hash = hash_name(channel);
	DeliveryQueue *queue = queue_find(queues, channel, hash);

	if (queue != NULL)
		return queue;
	if (queues->nqueues >= queues->nbuckets)
		queues_grow(queues);
	queue = mem_alloc(sizeof(DeliveryQueue));
	queue->hash = hash;
	queue->upto = -1;
	snprintf(queue->channel, sizeof(queue->channel), "%s", channel);
	queue->next = queues->buckets[hash & (queues->nbuckets - 1)];
	queues->buckets[hash & (queues->nbuckets - 1)] = queue;
	queues->nqueues++;
	return queue;
}

static void
queue_remove(DeliveryQueues *queues, DeliveryQueue *queue)
{
	DeliveryQueue **link = &queues->buckets[queue->hash & (queues->nbuckets - 1)];

	while (*link != queue)
		link = &(*link)->next;
	*link = queue->next;
	queues->nqueues--;
	free(queue);
}

static Delivery *
queue_append(DeliveryQueue *queue, bool ready)
{
	Delivery   *delivery = mem_alloc(sizeof(Delivery));

	delivery->queue = queue;
	delivery->ready = ready;
	if (queue->tail != NULL)
		queue->tail->next = delivery;
	else
		queue->head = delivery;
	queue->tail = delivery;
	return delivery;
}

void
delivery_add(Delivery *delivery, Packet *packet)
{
	delivery->packets = mem_realloc(delivery->packets,
									sizeof(Packet *) * (delivery->npackets + 1));
	delivery->packets[delivery->npackets++] = packet;
}

void
delivery_publish(DeliveryQueues *queues, Packet *packet)
{
	DeliveryQueue *queue = queues->nqueues > 0
		? queue_find(queues, packet->channel, hash_name(packet->channel)) : NULL;

	if (queue == NULL)
	{
		queues->publish(queues->ctx, packet);
		packet_unref(packet);
		return;
	}
	/* something waits on this channel: join the end of its queue */
	if (packet->seq > queue->upto)
		queue->upto = packet->seq;
	if (queue->tail->ready)
		delivery_add(queue->tail, packet);
	else
		delivery_add(queue_append(queue, true), packet);
}

Delivery *
delivery_wait(DeliveryQueues *queues, const char *channel, int64_t upto)
{
	DeliveryQueue *queue = queue_get(queues, channel);

	if (upto > queue->upto)
		queue->upto = upto;
	queues->not_ready++;
	return queue_append(queue, false);
}

int64_t
delivery_upto(const DeliveryQueues *queues, const char *channel)
{
	DeliveryQueue *queue = queues->nqueues > 0
		? queue_find(queues, channel, hash_name(channel)) : NULL;

	return queue != NULL ? queue->upto : -1;
}

const char *
delivery_channel(const Delivery *delivery)
{
	return delivery->queue->channel;
}

void
delivery_ready(DeliveryQueues *queues, Delivery *delivery)
{
	DeliveryQueue *queue = delivery->queue;

	if (!delivery->ready)
		queues->not_ready--;
	delivery->ready = true;
	delivery->owner = NULL;
	while (queue->head != NULL && queue->head->ready)
	{
		Delivery   *head = queue->head;
		size_t		i;

		queue->head = head->next;
		if (queue->head == NULL)
			queue->tail = NULL;
		for (i = 0; i < head->npackets; i++)
			queues->publish(queues->ctx, head->packets[i]);
		delivery_free(head);
	}
	if (queue->head == NULL)
		queue_remove(queues, queue);
}

size_t
delivery_channels_waiting(const DeliveryQueues *queues)
{
	return queues->nqueues;
}

size_t
delivery_not_ready(const DeliveryQueues *queues)
{
	return queues->not_ready;
}

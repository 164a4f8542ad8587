/*
 * packet.h — a packet as it travels to clients: rendered to its JSON text
 * once, then shared (reference-counted) by every session that queues it.
 *
 * The text is one element of a response's "packets" array:
 *   {"channel":"grid:1","seq":42,"data":{...}}   a durable packet
 *   {"channel":"grid:1","data":"text"}           a plain NOTIFY
 *   {"channel":"grid:1","gap":{"from":7,"to":19}} packets no longer kept
 */
#ifndef COMET_PACKET_H
#define COMET_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

typedef struct Packet
{
	int			refs;
	int64_t		seq;			/* -1: plain NOTIFY or gap */
	char		channel[PROTO_CHANNEL_MAX + 1];
	size_t		len;			/* of json, without the NUL */
	char		json[];			/* NUL-terminated */
} Packet;

/* A packet with refs = 1.  data_json must be valid JSON text. */
Packet	   *packet_new(const char *channel, int64_t seq,
					   const char *data_json, size_t data_len);
/* A gap notice with refs = 1. */
Packet	   *packet_new_gap(const char *channel, int64_t from, int64_t to);
Packet	   *packet_ref(Packet *packet);
void		packet_unref(Packet *packet);

#endif							/* COMET_PACKET_H */

/*
 * packet.c — packets rendered once and shared between sessions.
 */
#include "packet.h"

#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Packet *
packet_from_buf(const char *channel, int64_t seq, Buf *text)
{
	Packet	   *packet = mem_alloc(sizeof(Packet) + text->len + 1);

	packet->refs = 1;
	packet->seq = seq;
	snprintf(packet->channel, sizeof(packet->channel), "%s", channel);
	packet->len = text->len;
	memcpy(packet->json, text->data, text->len);
	packet->json[text->len] = '\0';
	buf_free(text);
	return packet;
}

Packet *
packet_new(const char *channel, int64_t seq, const char *data_json,
		   size_t data_len)
{
	Buf			text = BUF_INIT;

	proto_encode_packet(&text, channel, seq, data_json, data_len);
	return packet_from_buf(channel, seq, &text);
}

Packet *
packet_new_gap(const char *channel, int64_t from, int64_t to)
{
	Buf			text = BUF_INIT;

	proto_encode_gap(&text, channel, from, to);
	return packet_from_buf(channel, -1, &text);
}

Packet *
packet_ref(Packet *packet)
{
	packet->refs++;
	return packet;
}

void
packet_unref(Packet *packet)
{
	if (packet != NULL && --packet->refs == 0)
		free(packet);
}

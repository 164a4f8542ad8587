/*
 * answer.c — shared answer bodies (see answer.h): one buffer, or a head,
 * shared packets and a tail.
 */
#include "answer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define ANSWER_HEAD_MAX 48		/* {"rid":<20 digits>,"packets":[ */

static const char answer_comma[] = ",";
static const char answer_tail[] = "]}";

struct Answer
{
	int			refs;
	int			status;
	size_t		len;			/* of the whole body */
	char	   *flat;			/* the whole body, or NULL: pieces */
	/* pieces: head, packets[0], ",", packets[1], ..., tail */
	char		head[ANSWER_HEAD_MAX];
	size_t		head_len;
	Packet	  **packets;
	size_t		npackets;
};

Answer *
answer_from_bytes(int status, const char *body, size_t len)
{
	Answer	   *answer = mem_alloc(sizeof(Answer));

	answer->refs = 1;
	answer->status = status;
	answer->len = len;
	answer->flat = mem_alloc(len + 1);
	memcpy(answer->flat, body, len);
	return answer;
}

Answer *
answer_poll(uint64_t rid, Packet *const *packets, size_t npackets)
{
	Answer	   *answer = mem_alloc(sizeof(Answer));
	size_t		bytes = 0;
	size_t		i;
	char	   *at;

	answer->refs = 1;
	answer->status = 200;
	answer->head_len = (size_t) snprintf(answer->head, sizeof(answer->head),
										 "{\"rid\":%llu,\"packets\":[", (unsigned long long) rid);
	for (i = 0; i < npackets; i++)
		bytes += packets[i]->len;
	answer->len = answer->head_len + bytes + (npackets > 0 ? npackets - 1 : 0) +
		sizeof(answer_tail) - 1;
	if (bytes >= ANSWER_SHARE_MIN && 2 * npackets + 1 <= ANSWER_PIECES_MAX)
	{
		answer->packets = mem_alloc(sizeof(Packet *) * npackets);
		memcpy(answer->packets, packets, sizeof(Packet *) * npackets);
		answer->npackets = npackets;
		return answer;
	}
	/* small: one buffer, and the packets are no longer needed */
	answer->flat = mem_alloc(answer->len + 1);
	at = answer->flat;
	memcpy(at, answer->head, answer->head_len);
	at += answer->head_len;
	for (i = 0; i < npackets; i++)
	{
		if (i > 0)
			*at++ = ',';
		memcpy(at, packets[i]->json, packets[i]->len);
		at += packets[i]->len;
		packet_unref(packets[i]);
	}
	memcpy(at, answer_tail, sizeof(answer_tail) - 1);
	return answer;
}

Answer *
answer_ref(Answer *answer)
{
	answer->refs++;
	return answer;
}

void
answer_unref(Answer *answer)
{
	size_t		i;

	if (answer == NULL || --answer->refs > 0)
		return;
	for (i = 0; i < answer->npackets; i++)
		packet_unref(answer->packets[i]);
	free(answer->packets);
	free(answer->flat);
	free(answer);
}

int
answer_status(const Answer *answer)
{
	return answer->status;
}

size_t
answer_length(const Answer *answer)
{
	return answer->len;
}

size_t
answer_npieces(const Answer *answer)
{
	if (answer->flat != NULL)
		return 1;
	/* head, n packets, n - 1 commas, tail (n >= 1: see answer_poll) */
	return 2 * answer->npackets + 1;
}

void
answer_piece(const Answer *answer, size_t i, const char **data, size_t *len)
{
	if (answer->flat != NULL)
	{
		*data = answer->flat;
		*len = answer->len;
		return;
	}
	if (i == 0)
	{
		*data = answer->head;
		*len = answer->head_len;
	}
	else if (i == 2 * answer->npackets)
	{
		*data = answer_tail;
		*len = sizeof(answer_tail) - 1;
	}
	else if (i % 2 == 1)
	{
		*data = answer->packets[i / 2]->json;
		*len = answer->packets[i / 2]->len;
	}
	else
	{
		*data = answer_comma;
		*len = sizeof(answer_comma) - 1;
	}
}

void
answer_flatten(const Answer *answer, Buf *out)
{
	size_t		n = answer_npieces(answer);
	size_t		i;

	for (i = 0; i < n; i++)
	{
		const char *data;
		size_t		len;

		answer_piece(answer, i, &data, &len);
		buf_append(out, data, len);
	}
}

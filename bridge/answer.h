/*
 * answer.h — the body of an answer to a /comet request, built once and
 * shared (reference-counted) by the session's cache of answers and the
 * HTTP response being written.
 *
 * A poll's answer {"rid":N,"packets":[...]} carries packets that are
 * already rendered (packet.h).  When they are small the answer is one
 * buffer: the HTTP layer hands it to libmicrohttpd as it is (no copy), which
 * writes headers and body with one send.  When a few packets add up to
 * ANSWER_SHARE_MIN bytes or more, the answer keeps references to the
 * packets instead, and the body is a list of pieces (the head, each
 * packet's JSON, the commas, the tail): a large packet fanned out to many
 * sessions is held once in memory, not once per session (the HTTP layer
 * writes the pieces through a small buffer of its own).  At most
 * ANSWER_PIECES_MAX pieces, since each write walks them: a catch-up of many
 * packets is one buffer.
 */
#ifndef COMET_ANSWER_H
#define COMET_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "packet.h"

/* Packet bytes from which a poll's answer shares them instead of copying. */
#define ANSWER_SHARE_MIN 16384
/* The most pieces a shared answer has. */
#define ANSWER_PIECES_MAX 33

typedef struct Answer Answer;

/* An answer whose body is a copy of body[0..len); refs = 1. */
Answer	   *answer_from_bytes(int status, const char *body, size_t len);
/*
 * 200 {"rid":rid,"packets":[...]} with npackets packets, whose references
 * the answer takes over; refs = 1.
 */
Answer	   *answer_poll(uint64_t rid, Packet *const *packets, size_t npackets);
Answer	   *answer_ref(Answer *answer);
void		answer_unref(Answer *answer);

int			answer_status(const Answer *answer);
size_t		answer_length(const Answer *answer);
/* The body in pieces, in order: one piece when it is a single buffer. */
size_t		answer_npieces(const Answer *answer);
void		answer_piece(const Answer *answer, size_t i, const char **data, size_t *len);
/* Appends the whole body to out. */
void		answer_flatten(const Answer *answer, Buf *out);

#endif							/* COMET_ANSWER_H */

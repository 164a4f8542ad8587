/*
 * token.c — random material for access tokens.
 *
 * comet.issue_token (SQL) stores only the SHA-256 of what this returns; the
 * token itself is shown once, to the caller, and never kept.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "comet.h"

/* 32 bytes = 256 bits from the operating system's random source */
#define COMET_TOKEN_BYTES 32

static const char base64url_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* comet._random_token() returns text: URL-safe base64, no padding */
PG_FUNCTION_INFO_V1(comet_random_token);
Datum
comet_random_token(PG_FUNCTION_ARGS)
{
	uint8		bytes[COMET_TOKEN_BYTES + 2] = {0};
	char		token[(COMET_TOKEN_BYTES + 2) / 3 * 4 + 1];
	int			out = 0;
	int			i;

	if (!pg_strong_random(bytes, COMET_TOKEN_BYTES))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token")));
	for (i = 0; i < COMET_TOKEN_BYTES; i += 3)
	{
		uint32		group = ((uint32) bytes[i] << 16) |
			((uint32) bytes[i + 1] << 8) | bytes[i + 2];
		int			remaining = COMET_TOKEN_BYTES - i;

		token[out++] = base64url_alphabet[(group >> 18) & 63];
		token[out++] = base64url_alphabet[(group >> 12) & 63];
		if (remaining > 1)
			token[out++] = base64url_alphabet[(group >> 6) & 63];
		if (remaining > 2)
			token[out++] = base64url_alphabet[group & 63];
	}
	token[out] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

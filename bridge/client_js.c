/*
 * client_js.c — embeds client/comet.js and client/comet.mjs into the bridge
 * with the assembler's .incbin (the Makefile rebuilds this file when they
 * change), so an installed bridge serves its own client.
 */
#include "client_js.h"

#include <stdint.h>

/* each file, then its length as a 64-bit number the assembler computes */
__asm__(".section .rodata\n"
		".balign 16\n"
		"comet_client_js_data:\n"
		".incbin \"../client/comet.js\"\n"
		"1:\n"
		".balign 8\n"
		"comet_client_js_len:\n"
		".quad 1b - comet_client_js_data\n"
		".balign 16\n"
		"comet_client_mjs_data:\n"
		".incbin \"../client/comet.mjs\"\n"
		"2:\n"
		".balign 8\n"
		"comet_client_mjs_len:\n"
		".quad 2b - comet_client_mjs_data\n"
		".previous\n");

extern const char comet_client_js_data[];
extern const uint64_t comet_client_js_len;
extern const char comet_client_mjs_data[];
extern const uint64_t comet_client_mjs_len;

ClientFile
client_js(void)
{
	ClientFile	file = {comet_client_js_data, (size_t) comet_client_js_len};

	return file;
}

ClientFile
client_mjs(void)
{
	ClientFile	file = {comet_client_mjs_data, (size_t) comet_client_mjs_len};

	return file;
}

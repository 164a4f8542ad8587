/*
 * client_js.c — embeds client/comet.js and client/comet.mjs into the bridge
 * with the assembler's .incbin (the Makefile rebuilds this file when they
 * change), so an installed bridge serves its own client.
 */
#include "client_js.h"

__asm__(".section .rodata\n"
		".balign 16\n"
		"comet_client_js_start:\n"
		".incbin \"../client/comet.js\"\n"
		"comet_client_js_end:\n"
		".balign 16\n"
		"comet_client_mjs_start:\n"
		".incbin \"../client/comet.mjs\"\n"
		"comet_client_mjs_end:\n"
		".previous\n");

extern const char comet_client_js_start[];
extern const char comet_client_js_end[];
extern const char comet_client_mjs_start[];
extern const char comet_client_mjs_end[];

ClientFile
client_js(void)
{
	ClientFile	file = {comet_client_js_start,
	(size_t) (comet_client_js_end - comet_client_js_start)};

	return file;
}

ClientFile
client_mjs(void)
{
	ClientFile	file = {comet_client_mjs_start,
	(size_t) (comet_client_mjs_end - comet_client_mjs_start)};

	return file;
}

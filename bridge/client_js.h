/*
 * client_js.h — the browser client built into the bridge: client/comet.js
 * (served as /comet.js unless --client names another file) and
 * client/comet.mjs (served as /comet.mjs), embedded at build time.
 */
#ifndef COMET_CLIENT_JS_H
#define COMET_CLIENT_JS_H

#include <stddef.h>

typedef struct ClientFile
{
	const char *data;
	size_t		len;
} ClientFile;

ClientFile	client_js(void);
ClientFile	client_mjs(void);

#endif							/* COMET_CLIENT_JS_H */

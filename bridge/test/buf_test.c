/*
 * buf_test.c — what buf.h promises: contents always NUL-terminated,
 * growth without limits of its own, exact decimal and JSON string output,
 * and an abort with a message when a size cannot be represented.
 */
#include "buf.h"

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

/*
 * unit.h's UNIT_CHECK evaluates its condition twice (once to count, once to
 * explain a failure); the conditions here decode, allocate and print, so
 * CHECK evaluates each exactly once and hands UNIT_CHECK the result.
 */
#define CHECK(cond, ...) \
	do { \
		bool		check_passed_ = (cond); \
		if (!check_passed_) \
			printf("#   check: %s\n", #cond); \
		UNIT_CHECK(check_passed_, __VA_ARGS__); \
	} while (0)

/* Whether buf holds exactly expected (with its NUL after it). */
static bool
buf_equals(const Buf *buf, const char *expected)
{
	size_t		len = strlen(expected);

	return buf->data != NULL && buf->len == len &&
		memcmp(buf->data, expected, len) == 0 && buf->data[len] == '\0';
}

/* str[0..len) written as a JSON string equals expected. */
static bool
json_string_is(const char *str, size_t len, const char *expected)
{
	Buf			buf = BUF_INIT;
	bool		equal;

	buf_append_json_string(&buf, str, len);
	equal = buf_equals(&buf, expected);
	if (!equal)
		printf("#   got: %s\n", buf.data);
	buf_free(&buf);
	return equal;
}

/* The same for a string literal, NULs included, its length counted for us. */
#define JSON_STRING_IS(literal, expected) \
	json_string_is(literal, sizeof(literal) - 1, expected)

static void
test_empty_and_appends(void)
{
	Buf			buf = BUF_INIT;

	CHECK(buf.data == NULL && buf.len == 0 && buf.capacity == 0,
			   "BUF_INIT is empty and holds no memory");

	buf_append(&buf, NULL, 0);
	CHECK(buf_equals(&buf, ""), "appending nothing leaves an empty C string");

	buf_append(&buf, "abc", 3);
	buf_append_str(&buf, "def");
	buf_append_char(&buf, 'g');
	CHECK(buf_equals(&buf, "abcdefg"), "append, append_str and append_char concatenate");

	buf_append(&buf, "x\0y", 3);
	CHECK(buf.len == 10 && memcmp(buf.data + 7, "x\0y", 3) == 0 && buf.data[10] == '\0',
			   "buf_append copies NUL bytes and still terminates");
	buf_free(&buf);
}

static void
test_growth(void)
{
	Buf			buf = BUF_INIT;
	bool		all_right = true;
	int			i;

	for (i = 0; i < 100000; i++)
		buf_append_char(&buf, (char) ('a' + i % 26));
	for (i = 0; i < 100000 && all_right; i++)
		all_right = buf.data[i] == (char) ('a' + i % 26);
	CHECK(all_right && buf.len == 100000 && buf.data[100000] == '\0',
			   "100000 single-byte appends keep every byte in order");
	CHECK(buf.capacity >= buf.len + 1 && buf.capacity < 4 * buf.len,
			   "capacity grows geometrically (%zu for %zu bytes)", buf.capacity, buf.len);

	buf_reset(&buf);
	buf_reserve(&buf, 1000000);
	CHECK(buf.capacity >= 1000001, "buf_reserve makes room for the bytes and the NUL");
	buf_free(&buf);
}

static void
test_printf(void)
{
	Buf			buf = BUF_INIT;
	char		long_text[5000];
	Buf			expected = BUF_INIT;

	buf_printf(&buf, "%d-%s", 42, "x");
	CHECK(buf_equals(&buf, "42-x"), "buf_printf formats into an empty buffer");
	buf_printf(&buf, "[%05.1f]", 3.14159);
	CHECK(buf_equals(&buf, "42-x[003.1]"), "buf_printf appends to what is there");

	memset(long_text, 'z', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	buf_printf(&buf, "<%s>", long_text);
	buf_append_str(&expected, "42-x[003.1]<");
	buf_append_str(&expected, long_text);
	buf_append_str(&expected, ">");
	CHECK(buf_equals(&buf, expected.data),
			   "buf_printf output longer than the free space is written whole");

	buf_reset(&buf);
	buf_printf(&buf, "%s", "");
	CHECK(buf_equals(&buf, ""), "buf_printf of nothing leaves an empty C string");
	buf_free(&buf);
	buf_free(&expected);
}

static void
test_int64(void)
{
	static const struct
	{
		int64_t		value;
		const char *text;
	}			cases[] = {
		{0, "0"},
		{7, "7"},
		{-1, "-1"},
		{42, "42"},
		{1234567890123, "1234567890123"},
		{INT64_MAX, "9223372036854775807"},
		{INT64_MIN, "-9223372036854775808"},
	};
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		Buf			buf = BUF_INIT;

		buf_append_str(&buf, "=");
		buf_append_int64(&buf, cases[i].value);
		CHECK(buf.data[0] == '=' && strcmp(buf.data + 1, cases[i].text) == 0,
				   "buf_append_int64 appends %s", cases[i].text);
		buf_free(&buf);
	}
}

static void
test_json_string(void)
{
	CHECK(JSON_STRING_IS("grid:1", "\"grid:1\""), "plain ASCII is quoted as it is");
	CHECK(JSON_STRING_IS("", "\"\""), "the empty string is \"\"");
	CHECK(JSON_STRING_IS("say \"hi\"", "\"say \\\"hi\\\"\""), "double quotes are escaped");
	CHECK(JSON_STRING_IS("a\\b", "\"a\\\\b\""), "backslashes are escaped");
	CHECK(JSON_STRING_IS("a/b", "\"a/b\""), "slashes are left alone");
	CHECK(JSON_STRING_IS("1\n2\t3\r4\b5\f6", "\"1\\n2\\t3\\r4\\b5\\f6\""),
			   "\\n \\t \\r \\b \\f get their short escapes");
	CHECK(JSON_STRING_IS("\x01\x1f", "\"\\u0001\\u001f\""),
			   "other control characters become \\u00XX");
	CHECK(JSON_STRING_IS("a\0b", "\"a\\u0000b\""), "a NUL byte inside len becomes \\u0000");
	CHECK(JSON_STRING_IS("\x7f", "\"\\u007f\""), "DEL is escaped as \\u007f");
	CHECK(JSON_STRING_IS("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
							  "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""),
			   "valid 2-, 3- and 4-byte UTF-8 is copied as it is");
	CHECK(JSON_STRING_IS("a\xe2\x80\xa8" "b\xe2\x80\xa9" "c", "\"a\\u2028b\\u2029c\""),
			   "U+2028 and U+2029 are escaped for browsers");
	CHECK(JSON_STRING_IS("x\x80y", "\"x\xef\xbf\xbdy\""),
			   "a lone continuation byte becomes U+FFFD");
	CHECK(JSON_STRING_IS("x\xe2\x82", "\"x\xef\xbf\xbd\""),
			   "a sequence cut short at the end becomes one U+FFFD");
	CHECK(JSON_STRING_IS("\xe2\x82x", "\"\xef\xbf\xbdx\""),
			   "a sequence cut short by ASCII becomes one U+FFFD and keeps the ASCII");
	CHECK(JSON_STRING_IS("\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""),
			   "an overlong '/' (C0 AF) becomes two U+FFFD, never '/'");
	CHECK(JSON_STRING_IS("\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""),
			   "an encoded surrogate (ED A0 80) becomes U+FFFD per byte");
	CHECK(JSON_STRING_IS("\xf4\x90\x80\x80",
							  "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""),
			   "code points above U+10FFFF are replaced");
	CHECK(JSON_STRING_IS("\xff\"", "\"\xef\xbf\xbd\\\"\""),
			   "an invalid byte before a quote does not swallow the quote");
}

static void
test_reset_free_steal(void)
{
	Buf			buf = BUF_INIT;
	char	   *stolen;
	size_t		stolen_len = 99;
	size_t		capacity;

	buf_append_str(&buf, "hello");
	capacity = buf.capacity;
	buf_reset(&buf);
	CHECK(buf_equals(&buf, "") && buf.capacity == capacity,
			   "buf_reset empties the buffer and keeps its memory");

	buf_append_str(&buf, "again");
	stolen = buf_steal(&buf, &stolen_len);
	CHECK(strcmp(stolen, "again") == 0 && stolen_len == 5,
			   "buf_steal hands over the contents and their length");
	CHECK(buf.data == NULL && buf.len == 0 && buf.capacity == 0,
			   "buf_steal leaves the buffer empty");
	free(stolen);

	stolen = buf_steal(&buf, &stolen_len);
	CHECK(stolen != NULL && stolen[0] == '\0' && stolen_len == 0,
			   "buf_steal of an empty buffer returns an allocated \"\"");
	free(stolen);

	stolen = buf_steal(&buf, NULL);
	CHECK(stolen != NULL, "buf_steal accepts a NULL length");
	free(stolen);

	buf_append_str(&buf, "x");
	buf_free(&buf);
	CHECK(buf.data == NULL && buf.len == 0 && buf.capacity == 0,
			   "buf_free returns the buffer to BUF_INIT");
	buf_free(&buf);
	CHECK(buf.data == NULL, "buf_free twice is harmless");
}

/* In a child: reserve more than size_t can count; the child must abort. */
static void
test_impossible_reservation_aborts(void)
{
	int			pipe_fds[2];
	pid_t		child;
	int			status = 0;
	char		message[256] = "";
	ssize_t		got;
	size_t		total = 0;

	if (pipe(pipe_fds) != 0)
	{
		CHECK(false, "pipe() for the abort test");
		return;
	}
	fflush(stdout);
	child = fork();
	if (child == 0)
	{
		Buf			buf = BUF_INIT;

		dup2(pipe_fds[1], STDERR_FILENO);
		close(pipe_fds[0]);
		buf_append_str(&buf, "some");
		buf_reserve(&buf, SIZE_MAX - 2);
		_exit(0);				/* not reached when buf_reserve aborts */
	}
	close(pipe_fds[1]);
	while ((got = read(pipe_fds[0], message + total, sizeof(message) - 1 - total)) > 0)
		total += (size_t) got;
	message[total] = '\0';
	close(pipe_fds[0]);
	waitpid(child, &status, 0);

	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
			   "reserving more than size_t can count aborts the process");
	CHECK(strstr(message, "out of memory") != NULL,
			   "and says so on stderr first");
}

int
main(void)
{
	test_empty_and_appends();
	test_growth();
	test_printf();
	test_int64();
	test_json_string();
	test_reset_free_steal();
	test_impossible_reservation_aborts();
	return unit_done();
}

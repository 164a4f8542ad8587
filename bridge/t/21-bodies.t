# 21-bodies.t — abusive request bodies: sizes at and over --max-body
# (Content-Length, announced only, chunked, Expect: 100-continue), JSON
# nested 10,000 deep, objects of 100,000 members and arrays of 100,000
# items, strings of 1 MB, invalid UTF-8, overlong encodings, surrogates and
# NUL in every string position, and rids that are far ahead, far behind,
# fractional, negative, huge or not numbers.  Each gets its documented
# condition (docs/protocol.md) with a message, nothing crashes, and a good
# session's held poll gets its packet at the end.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use Test::More;
use CometTest;

grant('ok', ['subscribe', 'publish']);
grant('good', ['subscribe']);
grant('ok:%', ['subscribe', 'publish']);

my $MAX = 4096;
my $BIG = 4 * 1024 * 1024;
my $small = start_bridge(args => ['--wait', '10', '--max-body', $MAX]);
my $big = start_bridge(args => ['--wait', '10', '--max-body', $BIG]);

my $good = $small->setup(subscribe => ['good'], wait => 30);
is($good->status, 200, 'a good session') or BAIL_OUT('no session');
my $good_poll = $good->start_poll;

# One raw request on a new connection: returns (response or undef, conn).
sub raw
{
	my ($bridge, $bytes, $timeout) = @_;
	my $c = $bridge->connect;
	$c->send_raw($bytes);
	my $res = $c->response($timeout // 5);
	return ($res, $c);
}

sub post_bytes
{
	my ($body, %h) = @_;
	my $headers = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
	$headers .= 'Content-Length: ' . length($body) . "\r\n" unless exists $h{'Transfer-Encoding'};
	return "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n$headers\r\n$body";
}

sub chunked
{
	my ($body, $size) = @_;
	my $out = '';
	for (my $i = 0; $i < length $body; $i += $size)
	{
		my $piece = substr($body, $i, $size);
		$out .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
	}
	return "${out}0\r\n\r\n";
}

# A setup body of exactly $len bytes (padded with an ignored member).
sub setup_body_of
{
	my ($len) = @_;
	my $head = '{"rid":' . random_rid() . ',"subscribe":["ok"],"wait":1,"pad":"';
	my $tail = '"}';
	my $n = $len - length($head) - length($tail);
	die "too short" if $n < 0;
	return $head . ('x' x $n) . $tail;
}

# The answer is the condition, with a message.
sub is_condition
{
	my ($res, $status, $condition, $name) = @_;
	my $json = $res && ref $res->{json} eq 'HASH' ? $res->{json} : {};
	ok($res && $res->{status} == $status && ($json->{error} // '') eq $condition
			&& defined $json->{message} && !ref $json->{message} && length $json->{message},
		"$name: $status $condition with a message")
		or diag($res ? "got $res->{status}: " . substr($res->{body} // '', 0, 300) : 'no answer');
}

sub is_setup_ok
{
	my ($res, $name) = @_;
	ok($res && $res->{status} == 200 && ref $res->{json} eq 'HASH' && defined $res->{json}{sid}, "$name: 200 with a sid")
		or diag($res ? "got $res->{status}: " . substr($res->{body} // '', 0, 300) : 'no answer');
}

# ---- sizes -------------------------------------------------------------------

subtest 'bodies at and over --max-body' => sub {
	my $at = setup_body_of($MAX);
	is(length $at, $MAX, "a body of exactly $MAX bytes");
	my ($res) = raw($small, post_bytes($at));
	is_setup_ok($res, 'exactly --max-body, with Content-Length');
	($res) = raw($small, post_bytes(chunked($at, 1000), 'Transfer-Encoding' => 'chunked'));
	is_setup_ok($res, 'exactly --max-body, chunked');
	($res) = raw($small, post_bytes(chunked($at, 1), 'Transfer-Encoding' => 'chunked'));
	is_setup_ok($res, 'exactly --max-body, in chunks of one byte');

	my $over = setup_body_of($MAX + 1);
	($res) = raw($small, post_bytes($over));
	is_condition($res, 413, 'request-too-large', 'one byte over, with Content-Length');
	($res) = raw($small, post_bytes(chunked($over, 1000), 'Transfer-Encoding' => 'chunked'));
	is_condition($res, 413, 'request-too-large', 'one byte over, chunked');
	($res) = raw($small, post_bytes(chunked('{"rid":1,"pad":"' . ('y' x 200_000) . '"}', 4096),
			'Transfer-Encoding' => 'chunked'), 10);
	is_condition($res, 413, 'request-too-large', '200 KB chunked');
};

subtest 'an announced Content-Length over the limit is refused before the body' => sub {
	my $t = time;
	my ($res, $c) = raw($small, "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n", 3);
	is_condition($res, 413, 'request-too-large', 'Content-Length 10,000,000 and no body sent');
	cmp_ok(time - $t, '<', 2, 'answered at once, without waiting for the body');
	ok(wait_until(sub { $c->closed_by_peer }, 3), 'and the connection is closed (the body is never read)');

	($res, $c) = raw($small, "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
		. "Content-Length: " . ($MAX + 1) . "\r\n\r\n", 3);
	is_condition($res, 413, 'request-too-large', 'Expect: 100-continue with a body one byte over');
	ok(wait_until(sub { $c->closed_by_peer }, 3), 'without 100 Continue, and the connection is closed');

	($res, $c) = raw($small, "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
		. "Content-Length: $MAX\r\n\r\n", 3);
	is($res && $res->{status}, 100, 'Expect: 100-continue at the limit gets 100 Continue');
	$c->send_raw(setup_body_of($MAX));
	$res = $c->response(5);
	is_setup_ok($res, 'and then the body is read');
};

# ---- deep and wide JSON ----------------------------------------------------

subtest 'JSON nested 10,000 deep' => sub {
	my $rid = random_rid();
	my $s = $big->setup(subscribe => ['ok']);
	is($s->status, 200, 'a session on the big bridge') or return;
	my %cases = (
		'arrays in an unknown member' => '{"rid":' . $rid . ',"x":' . ('[' x 10_000) . (']' x 10_000) . '}',
		'objects in an unknown member' => '{"rid":' . $rid . ',"x":' . ('{"a":' x 10_000) . '1' . ('}' x 10_000) . '}',
		'arrays in auth' => '{"rid":' . $rid . ',"auth":{"token":' . ('[' x 10_000) . (']' x 10_000) . '}}',
		'arrays in subscribe' => '{"rid":' . $rid . ',"subscribe":' . ('[' x 10_000) . (']' x 10_000) . '}',
		'arrays in send data' => '{"sid":"' . $s->sid . '","rid":' . ($s->last_rid + 1)
			. ',"send":[{"channel":"ok","data":' . ('[' x 10_000) . (']' x 10_000) . '}]}',
		'100,000 deep, never closed' => '{"rid":' . $rid . ',"x":' . ('[' x 100_000),
		'100,000 deep objects, never closed' => '{"rid":' . $rid . ',"x":' . ('{"a":' x 100_000),
	);
	for my $name (sort keys %cases)
	{
		my ($res) = raw($big, post_bytes($cases{$name}), 10);
		is_condition($res, 400, 'bad-request', $name);
		like($res && $res->{json} && $res->{json}{message} // '', qr/nested deeper than \d+ levels/,
			"$name: the message says why") if $res && $res->{status} == 400;
	}
	my ($status, undef, $json) = $s->request(send => [ { channel => 'ok', data => 'still here' } ]);
	is($status, 200, 'the session used for the deep send goes on');
	ok($big->alive, 'the big bridge still runs');
};

subtest 'wide JSON: 100,000 members, 100,000 items' => sub {
	my $members = join ',', map { "\"k$_\":$_" } 1 .. 100_000;
	my $t = time;
	my ($res) = raw($big, post_bytes('{"rid":' . random_rid() . ',"subscribe":["ok"],"wait":1,' . $members . '}'), 20);
	is_setup_ok($res, 'a setup with 100,000 unknown members (they are ignored)');
	note(sprintf('answered in %.2f s', time - $t));
	($res) = raw($big, post_bytes('{"rid":' . random_rid() . ',"subscribe":["ok"],"wait":1,"auth":{' . $members . '}}'), 20);
	is_setup_ok($res, 'an auth object with 100,000 members (anonymous: no token)');
	($res) = raw($big, post_bytes('{"rid":' . random_rid() . ',"resume":{' . join(',', map { "\"ok:$_\":1" } 1 .. 100_000) . '}}'), 20);
	is_condition($res, 400, 'bad-request', 'resume with 100,000 channels');

	my $items = join ',', map { "\"ok:$_\"" } 1 .. 100_000;
	($res) = raw($big, post_bytes('{"rid":' . random_rid() . ',"subscribe":[' . $items . ']}'), 20);
	is_condition($res, 400, 'bad-request', 'subscribe with 100,000 items');
	like($res && $res->{json} && $res->{json}{message} // '', qr/more than \d+ items/, 'the message gives the limit');

	my $s = $big->setup(subscribe => ['ok']);
	my $sent = sql(q{SELECT comet.last_seq('ok')});
	($res) = raw($big, post_bytes('{"sid":"' . $s->sid . '","rid":' . ($s->last_rid + 1) . ',"unsubscribe":[' . $items . ']}'), 20);
	is_condition($res, 400, 'bad-request', 'unsubscribe with 100,000 items');
	($res) = raw($big, post_bytes('{"sid":"' . $s->sid . '","rid":' . ($s->last_rid + 1) . ',"send":['
			. join(',', map { '{"channel":"ok","data":1}' } 1 .. 100_000) . ']}'), 20);
	is_condition($res, 400, 'bad-request', 'send with 100,000 items');
	is(sql(q{SELECT comet.last_seq('ok')}), $sent, 'and nothing was sent');

	my @names = map { "ok:$_" } 1 .. 256;
	my $many = $big->setup(subscribe => \@names, wait => 1);
	is($many->status, 200, 'subscribe with 256 items, the limit, works');
	is(scalar @{ $many->response->{subscribed} // [] }, 256, 'and subscribes to all 256');
	$many->request(terminate => JSON::PP::true);
	$many = $big->setup(subscribe => [ @names, 'ok:257' ]);
	is($many->status, 400, 'with 257 items it is 400');
};

subtest 'strings of 1 MB inside --max-body' => sub {
	my $mb = 'z' x (1024 * 1024);
	my $s = $big->setup(subscribe => ['ok:mb'], wait => 5);
	is($s->status, 200, 'a subscriber') or return;
	my $t = time;
	my ($status, undef, $json) = $s->request(send => [ { channel => 'ok:mb', data => { text => $mb } } ], timeout => 20);
	is($status, 200, 'a send of 1 MB of data is answered 200');
	is_deeply($json && $json->{results}, [ { ok => JSON::PP::true } ], 'and is ok');
	my @p = @{ $json->{packets} // [] };
	push @p, @{ $s->collect(1, 10) } unless @p;
	ok(@p == 1 && $p[0]{data}{text} eq $mb, 'the 1 MB packet comes back whole, end to end')
		or diag('got ' . scalar(@p) . ' packets');
	note(sprintf('1 MB round trip in %.2f s', time - $t));

	my ($res) = raw($big, post_bytes(encode_json_canonical({ rid => 1, auth => { token => $mb } })), 20);
	is_condition($res, 403, 'forbidden', 'a 1 MB token');
	($res) = raw($big, post_bytes(encode_json_canonical({ rid => 1, subscribe => [$mb] })), 20);
	is_condition($res, 400, 'bad-request', 'a 1 MB channel name');
	($res) = raw($big, post_bytes(encode_json_canonical({ rid => 1, sid => $mb })), 20);
	is_condition($res, 400, 'bad-request', 'a 1 MB sid');
	($res) = raw($big, post_bytes('{"rid":' . random_rid() . ',"wait":1,"' . $mb . '":1}'), 20);
	is_setup_ok($res, 'a 1 MB member name (ignored)');
	($res) = raw($big, post_bytes('{"rid":' . random_rid() . ',"wait":1,"x":"' . ('\\u00e9' x 200_000) . '"}'), 20);
	is_setup_ok($res, '200,000 \\u escapes (ignored)');
};

# ---- invalid UTF-8, surrogates, NUL ---------------------------------------

# Where a string can be: each sub makes a body with the string in it.  The
# session's requests take its next rid, taken only when the bridge got as
# far as the session (a 400 from decoding takes none).
my $gs;
sub string_session
{
	$gs = $big->setup(subscribe => ['ok'], wait => 1) if !$gs || $gs->{gone};
	die 'no session' unless $gs->status == 200;
	return $gs;
}
sub in_session
{
	my ($make) = @_;
	return sub {
		my $s = string_session();
		return ($make->($s->sid, $s->last_rid + 1, $_[0]), $s);
	};
}
my %positions = (
	'sid' => sub { qq({"sid":"$_[0]","rid":1}) },
	'subscribe item' => sub { qq({"rid":1,"subscribe":["ok$_[0]"]}) },
	'unsubscribe item' => in_session(sub { qq({"sid":"$_[0]","rid":$_[1],"unsubscribe":["ok$_[2]"]}) }),
	'send channel' => in_session(sub { qq({"sid":"$_[0]","rid":$_[1],"send":[{"channel":"ok$_[2]","data":1}]}) }),
	'send data' => in_session(sub { qq({"sid":"$_[0]","rid":$_[1],"send":[{"channel":"ok","data":"a$_[2]b"}]}) }),
	'send data, nested' => in_session(sub { qq({"sid":"$_[0]","rid":$_[1],"send":[{"channel":"ok","data":{"k":["a$_[2]b"]}}]}) }),
	'send data member name' => in_session(sub { qq({"sid":"$_[0]","rid":$_[1],"send":[{"channel":"ok","data":{"a$_[2]b":1}}]}) }),
	'auth value' => sub { qq({"rid":1,"auth":{"token":"a$_[0]b"}}) },
	'auth member name' => sub { qq({"rid":1,"auth":{"a$_[0]b":"x"}}) },
	'resume member name' => sub { qq({"rid":1,"subscribe":["ok"],"resume":{"ok$_[0]":1}}) },
	'unknown member name' => sub { qq({"rid":1,"a$_[0]b":1}) },
	'unknown member value' => sub { qq({"rid":1,"x":"a$_[0]b"}) },
);

# POST the body for $pos with $string in it; returns the response.
sub post_at
{
	my ($pos, $string) = @_;
	my ($body, $s) = $positions{$pos}->($string);
	my ($res) = raw($big, post_bytes($body));
	if ($s && $res && $res->{status} != 400)
	{
		$s->next_rid;	# the session saw it
		$s->{gone} = 1 if $res->{status} == 404;
	}
	return $res;
}

subtest 'invalid UTF-8 in every string position' => sub {
	my %bad = (
		'a byte 0xFF' => "\xff",
		'a lone continuation byte' => "\x80",
		'a truncated sequence' => "\xe2\x82",
		'an overlong "/" (C0 AF)' => "\xc0\xaf",
		'an overlong NUL (C0 80)' => "\xc0\x80",
		'an overlong 3-byte "/" (E0 80 AF)' => "\xe0\x80\xaf",
		'an overlong 4-byte "/" (F0 80 80 AF)' => "\xf0\x80\x80\xaf",
		'a UTF-8 encoded surrogate (ED A0 80)' => "\xed\xa0\x80",
		'a UTF-8 encoded low surrogate (ED BF BF)' => "\xed\xbf\xbf",
		'above U+10FFFF (F4 90 80 80)' => "\xf4\x90\x80\x80",
		'a 5-byte form (F8 88 80 80 80)' => "\xf8\x88\x80\x80\x80",
	);
	for my $pos (sort keys %positions)
	{
		for my $what (sort keys %bad)
		{
			my $res = post_at($pos, $bad{$what});
			is_condition($res, 400, 'bad-request', "$what in the $pos");
		}
	}
	my ($res) = raw($big, post_bytes("{\"rid\":1,\"x\":1}\xff"));
	is_condition($res, 400, 'bad-request', 'invalid UTF-8 after the object');
};

subtest 'escaped surrogates and NUL in every string position' => sub {
	my %bad = (
		'an unpaired high surrogate \\ud800' => '\\ud800',
		'an unpaired low surrogate \\udc00' => '\\udc00',
		'a high surrogate before a letter \\ud800\\u0041' => '\\ud800\\u0041',
		'reversed surrogates \\udc00\\ud800' => '\\udc00\\ud800',
		'NUL as \\u0000' => '\\u0000',
		'a raw NUL byte' => "\x00",
		'a raw control character 0x01' => "\x01",
	);
	my $sent = sql(q{SELECT comet.last_seq('ok')});
	for my $pos (sort keys %positions)
	{
		for my $what (sort keys %bad)
		{
			my $res = post_at($pos, $bad{$what});
			if ($pos eq 'unknown member value' && $what =~ /u0000/)
			{
				# valid JSON in a member the bridge ignores
				ok($res && ($res->{status} == 200 || $res->{status} == 400), "$what in the $pos: ignored or refused");
				next;
			}
			my $json = $res && ref $res->{json} eq 'HASH' ? $res->{json} : {};
			# NUL can be said in JSON, but not stored in jsonb, a channel or
			# a sid: it must be refused as the client's error, never be an
			# internal error.  A send item may be refused in its result.
			my $item = ref $json->{results} eq 'ARRAY' ? $json->{results}[0] : undef;
			ok(($res && $res->{status} == 400 && ($json->{error} // '') eq 'bad-request' && length($json->{message} // ''))
					|| ($pos =~ /^send/ && $res && $res->{status} == 200 && ref $item eq 'HASH'
						&& ($item->{error} // '') eq 'bad-request' && length($item->{message} // '')),
				"$what in the $pos: 400 bad-request with a message")
				or diag($res ? "got $res->{status}: " . substr($res->{body} // '', 0, 300) : 'no answer');
		}
	}
	is(sql(q{SELECT comet.last_seq('ok')}), $sent, 'no packet was sent');
};

subtest 'valid escapes are fine' => sub {
	my $s = $big->setup(subscribe => ['ok:esc'], wait => 2);
	is($s->status, 200, 'a subscriber') or return;
	my $body = '{"sid":"' . $s->sid . '","rid":' . ($s->last_rid + 1)
		. ',"send":[{"channel":"ok:esc","data":"\\ud83d\\ude00 \\u00e9 \\u2028 \\" \\\\ \\/ \\b\\f\\n\\r\\t \\u007f"}]}';
	$s->next_rid;
	my ($res) = raw($big, post_bytes($body));
	is($res && $res->{status}, 200, 'a send with surrogate pairs, escapes, U+2028 and DEL is 200');
	is_deeply($res && $res->{json}{results}, [ { ok => JSON::PP::true } ], 'and ok');
	# the packet may come with the answer to the send itself
	my $p = [ @{ $res && $res->{json}{packets} // [] } ];
	$p = $s->collect(1, 5) unless @$p;
	is($p->[0] && $p->[0]{data}, "\x{1f600} \x{e9} \x{2028} \" \\ / \b\f\n\r\t \x{7f}", 'delivered character for character');
};

# ---- rids ---------------------------------------------------------------------

grant('rid', ['subscribe', 'publish']);

# A fresh session; its next request is a send, answered at once.
sub rid_session
{
	my $s = $small->setup(subscribe => ['rid'], wait => 1, rid => 100_000 + int(rand(2**40)));
	die 'no session' unless $s->status == 200;
	return $s;
}

sub still_works
{
	my ($s) = @_;
	my ($status, undef, $json) = $s->request(send => [ { channel => 'rid', data => 'ok' } ]);
	return $status && $status == 200 && ref $json->{results} eq 'ARRAY' && $json->{results}[0]{ok};
}

subtest 'rids far ahead or far behind end the session' => sub {
	for my $case ([ 'next + 1000', sub { $_[0] + 1000 } ], [ 'next + 2^52', sub { sprintf('%.0f', $_[0] + 2**52) } ],
		[ '2^53 - 1', sub { '9007199254740991' } ], [ 'last - 1000', sub { $_[0] - 1001 } ], [ '0', sub { 0 } ])
	{
		my ($name, $f) = @$case;
		my $s = rid_session();
		# a few requests first, so that "behind" is behind
		still_works($s) for 1 .. 3;
		my $next = $s->last_rid + 1;
		my $rid = $f->($next);
		my ($res) = raw($small, post_bytes(qq({"sid":"@{[$s->sid]}","rid":$rid})));
		is_condition($res, 404, 'item-not-found', "rid $name");
		$s->{rid} = $next - 1;
		my ($status, undef, $json) = $s->request(send => [ { channel => 'rid', data => 'late' } ]);
		is($status, 404, "rid $name: the session is gone (the right rid is 404 too)");
	}
};

subtest 'rids that are not integers in [0, 2^53) are 400 and the session goes on' => sub {
	my $s = rid_session();
	my $sid = $s->sid;
	for my $rid ('1.5', '%N.0', '%Ne0', '1e3', '-1', '-%N', '9007199254740992', '9223372036854775807',
		'18446744073709551616', '1e400', '"%N"', 'null', 'true', '[%N]', '{"n":%N}', '0%N', '+%N', 'NaN',
		'Infinity', '0x10', '%N%N%N%N%N%N%N%N%N%N%N%N%N%N%N%N')
	{
		my $next = $s->last_rid + 1;
		(my $text = $rid) =~ s/%N/$next/g;
		# both member orders: "sid" first takes the bridge's fast path for polls
		for my $body (qq({"sid":"$sid","rid":$text}), qq({"rid":$text,"sid":"$sid"}))
		{
			my ($res) = raw($small, post_bytes($body));
			is_condition($res, 400, 'bad-request', "rid $text in $body");
		}
		ok(still_works($s), "after rid $text the session goes on");
	}
	my ($res) = raw($small, post_bytes(qq({"sid":"$sid"})));
	is_condition($res, 400, 'bad-request', 'no rid at all');
	ok(still_works($s), 'and the session goes on');
	# JSON whitespace anywhere is fine, in either member order
	sql(q{SELECT comet.send('rid', '"queued"')});
	my $next = $s->last_rid + 1;
	($res) = raw($small, post_bytes(qq(\n { "rid" : $next ,\t"sid" :\r"$sid" } \n)));
	ok($res && $res->{status} == 200 && @{ $res->{json}{packets} // [] }, 'a poll with whitespace everywhere, rid first, is a poll');
	$s->next_rid;
	ok(still_works($s), 'and the session goes on');
};

subtest 'the good session was not harmed' => sub {
	ok(!$good_poll->readable(0), 'its poll is still held');
	sql(q{SELECT comet.send('good', '"still fine"')});
	my $res = $good_poll->response(5);
	is_deeply($res && [ map { $_->{data} } @{ $res->{json}{packets} } ], ['still fine'], 'and gets its packet');
	ok($small->alive && $big->alive, 'both bridges still run');
};

done_testing;

# 23-http.t — HTTP abuse: wrong methods and unknown paths get 405/404 as
# JSON, HEAD answers carry no body, OPTIONS without an allowed Origin is
# 403, huge request lines and headers are refused (431/414) without harm,
# request smuggling attempts (Content-Length with Transfer-Encoding, two
# Content-Lengths, whitespace before the colon, folded headers, codings
# other than chunked) are refused or framed one way only, and every
# documented error condition (docs/protocol.md, Errors) comes with its
# status, a JSON body with a message, and its count in
# comet_errors_total{condition}.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Time::HiRes qw(time sleep);
use Test::More;
use CometTest;

grant('good', ['subscribe']);
grant('c', ['subscribe', 'publish']);
my $bridge = start_bridge(args => ['--wait', '60']);
my $good = $bridge->setup(subscribe => ['good'], wait => 60);
is($good->status, 200, 'a good session') or BAIL_OUT('no session');
my $good_poll = $good->start_poll;

# Send raw bytes on a new connection; read every response that comes
# within $timeout (stopping at the end of the stream).  Returns
# (responses, whether the connection was closed by the bridge, raw bytes
# left over).
sub exchange
{
	my ($bytes, $timeout, $b) = @_;
	$b //= $bridge;
	my $c = $b->connect;
	$c->send_raw($bytes);
	my @res;
	my $deadline = time + ($timeout // 2);
	while (time < $deadline)
	{
		my $r = eval { $c->response($deadline - time) };
		last unless $r;
		push @res, $r;
		last if $c->{eof};
	}
	my $closed = $c->{eof} || wait_until(sub { $c->closed_by_peer }, 0.5) ? 1 : 0;
	my $left = $c->{buf};
	$c->close;
	return (\@res, $closed, $left);
}

sub json_error
{
	my ($res, $status, $condition, $name) = @_;
	my $json = $res && ref $res->{json} eq 'HASH' ? $res->{json} : {};
	ok($res && $res->{status} == $status && ($json->{error} // '') eq $condition
			&& length($json->{message} // '') && ($res->{headers}{'content-type'} // '') =~ m{^application/json},
		"$name: $status $condition as JSON with a message")
		or diag($res ? "got $res->{status} " . ($res->{headers}{'content-type'} // '') . ': '
			. substr($res->{body} // '', 0, 200) : 'no answer');
}

# ---- methods and paths -----------------------------------------------------------

subtest 'methods other than POST on /comet are 405 method-not-allowed' => sub {
	for my $method (qw(GET PUT DELETE PATCH TRACE FOO get post), 'M' x 200)
	{
		my $res = $bridge->http($method, '/comet', body => $method =~ /^(PUT|PATCH|FOO)$/ ? '{"rid":1}' : undef);
		json_error($res, 405, 'method-not-allowed', length $method > 10 ? 'a 200-letter method' : $method);
		like($res && $res->{headers}{allow} // '', qr/\bPOST\b/, 'with Allow: POST') if $res;
	}
};

subtest 'unknown paths are 404 item-not-found, other methods there 405' => sub {
	for my $path ('/nope', '/comet/', '/comet/x', '/COMET', '//comet', '/healthz/', '/metrics/x', '/comet.js/x',
		'/%00', '/' . ('a' x 2000), '/index.html', '/..', '/nope?x=/comet')
	{
		my $res = $bridge->http('GET', $path);
		my $shown = length $path > 40 ? substr($path, 0, 20) . '...' : $path;
		json_error($res, 404, 'item-not-found', "GET $shown");
	}
	my $res = $bridge->http('GET', '/comet%00');
	ok($res && $res->{status} =~ /^40[45]$/, "GET /comet%00 is 404 or 405 (\"/comet\" cut at NUL)");
	for my $case ([ POST => '/nope' ], [ POST => '/healthz' ], [ POST => '/metrics' ], [ POST => '/comet.js' ],
		[ PUT => '/nope' ], [ DELETE => '/healthz' ], [ POST => '/comet/' ])
	{
		my $res = $bridge->http($case->[0], $case->[1], body => '{"rid":1}');
		json_error($res, 405, 'method-not-allowed', "@$case");
	}
};

subtest 'HEAD is answered without a body' => sub {
	for my $case ([ '/healthz', 200 ], [ '/comet.js', 200 ], [ '/metrics', 200 ], [ '/comet', 405 ], [ '/nope', 404 ])
	{
		my ($path, $status) = @$case;
		my $c = $bridge->connect;
		$c->send_raw("HEAD $path HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
		my $head = '';
		my $deadline = time + 3;
		while (index($c->{buf}, "\r\n\r\n") < 0 && time < $deadline)
		{
			last unless $c->_fill($deadline);
		}
		my $end = index($c->{buf}, "\r\n\r\n");
		ok($end >= 0, "HEAD $path is answered") or next;
		like(substr($c->{buf}, 0, $end), qr{^HTTP/1\.1 $status }, "with $status");
		sleep 0.2;
		$c->closed_by_peer;
		is(length($c->{buf}) - $end - 4, 0, 'and no body');
		$c->close;
	}
};

subtest 'OPTIONS without an allowed Origin is 403 forbidden' => sub {
	my $res = $bridge->http('OPTIONS', '/comet');
	json_error($res, 403, 'forbidden', 'OPTIONS /comet without Origin');
	ok($res && !exists $res->{headers}{'access-control-allow-origin'}, 'without Access-Control-Allow-Origin');
	$res = $bridge->http('OPTIONS', '/comet', headers => { Origin => 'http://evil.example',
			'Access-Control-Request-Method' => 'POST' });
	json_error($res, 403, 'forbidden', 'OPTIONS /comet from an origin (none is allowed)');
	my ($r) = exchange("OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	json_error($r->[0], 403, 'forbidden', 'OPTIONS *');
};

# ---- oversized heads -----------------------------------------------------------

subtest 'huge request lines and headers are refused' => sub {
	my @cases = (
		[ 'a 100 KB header', "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " . ('a' x 100_000) . "\r\n\r\n", qr/^431$/ ],
		[ '2,000 small headers', "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" . join('', map { "X-$_: v\r\n" } 1 .. 2000) . "\r\n", qr/^431$/ ],
		[ 'a 100 KB URL', 'GET /' . ('a' x 100_000) . " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", qr/^(414|431)$/ ],
		[ 'a 100 KB query string on /comet', 'POST /comet?sid=' . ('a' x 100_000) . " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}", qr/^(414|431)$/ ],
		[ 'a 10 KB method', ('M' x 10_000) . " /comet HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", qr/^(400|405|414|431|501)$/ ],
		[ 'a huge Origin on a POST', "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://" . ('o' x 50_000)
			. "\r\nContent-Length: 9\r\n\r\n{\"rid\":1}", qr/^431$/ ],
	);
	for my $case (@cases)
	{
		my ($name, $bytes, $want) = @$case;
		my ($res, $closed) = exchange($bytes, 3);
		like($res->[0] ? $res->[0]{status} : 'no answer', $want, "$name: refused");
		ok($closed, "$name: the connection is closed");
	}
	ok(!$good_poll->readable(0), 'the good session\'s poll is still held');
	ok($bridge->alive, 'the bridge runs');
};

# ---- request smuggling -----------------------------------------------------------

# A setup body and a request pipelined after it: the second request must
# either be answered as a request of its own after a correctly framed first
# one, or not at all (the first refused and the connection closed).
my $body = '{"rid":1,"subscribe":[]}';
my $len = length $body;
my $next = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
my $chunked = sprintf("%x\r\n%s\r\n0\r\n\r\n", $len, $body);

sub framed_one_way
{
	my ($name, $head, $rest, %opt) = @_;
	my ($res, $closed, $left) = exchange("POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\n$head\r\n$rest$next", 3);
	my @status = map { $_->{status} } @$res;
	my $refused = @status >= 1 && $status[0] == 400 && @status == 1 && $closed;
	my $read_as_chunked = @status >= 1 && $status[0] == 200 && ref $res->[0]{json} eq 'HASH'
		&& defined $res->[0]{json}{sid};
	if ($opt{must_refuse})
	{
		ok($refused, "$name: refused with 400 and the connection closed")
			or diag("got: @status" . ($closed ? ', closed' : ', kept open') . '; bodies: '
				. join(' | ', map { substr($_->{body} // '', 0, 100) } @$res));
		return;
	}
	# RFC 9112 6.1: Transfer-Encoding wins over Content-Length, and the
	# connection must be closed after the response
	ok($refused || ($read_as_chunked && @status == 1 && $closed),
		"$name: refused, or read as chunked and the connection closed after it")
		or diag("got: @status" . ($closed ? ', closed' : ', kept open') . '; bodies: '
			. join(' | ', map { substr($_->{body} // '', 0, 100) } @$res));
}

subtest 'request smuggling attempts' => sub {
	framed_one_way('Content-Length and Transfer-Encoding: chunked', "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", $chunked);
	framed_one_way('Transfer-Encoding: chunked and Content-Length', "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", $chunked);
	framed_one_way('two Content-Lengths, the true one first', "Content-Length: $len\r\nContent-Length: 5\r\n", $body, must_refuse => 1);
	framed_one_way('two Content-Lengths, the true one last', "Content-Length: 5\r\nContent-Length: $len\r\n", $body, must_refuse => 1);
	framed_one_way('whitespace between Content-Length and the colon', "Content-Length : $len\r\n", $body, must_refuse => 1);
	TODO: {
		local $TODO = 'libmicrohttpd 0.9.75 folds the header before the bridge sees it; '
			. 'refusing obsolete line folding is issue 6 work';
		framed_one_way('a folded Content-Length', "Content-Length:\r\n $len\r\n", $body, must_refuse => 1);
	}
	framed_one_way('Transfer-Encoding: chunked, then another Transfer-Encoding: gzip',
		"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", $chunked, must_refuse => 1);
	framed_one_way('Transfer-Encoding with whitespace before the colon', "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
		$chunked, must_refuse => 1);

	# a coding the bridge cannot read: refused at once, never left hanging
	for my $te ('gzip', 'xchunked', 'chunked, gzip', 'gzip, chunked', 'identity')
	{
		my $t = time;
		my ($res, $closed) = exchange("POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: $te\r\n\r\n$chunked", 2);
		my $status = $res->[0] ? $res->[0]{status} : 'no answer within 2 s';
		like($status, qr/^(400|501)$/, "Transfer-Encoding: $te is refused with 400 or 501");
	}

	# two identical Content-Lengths are one length: either way is fine
	my ($res, $closed) = exchange("POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: $len\r\nContent-Length: $len\r\n\r\n$body$next", 3);
	my @status = map { $_->{status} } @$res;
	ok(("@status" eq '400' && $closed) || "@status" eq '200 200', "two equal Content-Lengths: refused, or read once (@status)");

	ok($bridge->alive, 'the bridge runs');
	ok(!$good_poll->readable(0), 'the good session\'s poll is still held');
};

subtest 'Content-Lengths that are not numbers are refused and the connection closed' => sub {
	for my $cl ('+24', '-1', '0x18', '24, 24', '', '24 24', '1e2', ' ', '99999999999999999999999')
	{
		my ($res, $closed) = exchange("POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: $cl\r\n\r\n$body$next", 3);
		like($res->[0] ? $res->[0]{status} : 'no answer', qr/^(400|413)$/, "Content-Length '$cl': refused");
		ok($closed && @$res == 1, "Content-Length '$cl': nothing else is read from that connection");
		TODO: {
			local $TODO = 'libmicrohttpd 0.9.75 writes the head of its own error answers twice';
			ok($res->[0] && $res->[0]{body} !~ m{^HTTP/}, "Content-Length '$cl': one well-formed answer")
				or diag('body: ' . substr($res->[0] ? $res->[0]{body} : '', 0, 80));
		}
	}
	for my $chunk ('FFFFFFFFFFFFFFFFFFFFFFFF', 'zz', '-1', '18x')
	{
		my ($res, $closed) = exchange("POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n$chunk\r\n$body\r\n0\r\n\r\n", 3);
		like($res->[0] ? $res->[0]{status} : 'no answer', qr/^(400|413)$/,
			'chunk size ' . substr($chunk, 0, 20) . ': refused');
		ok($closed, 'and the connection closed');
	}
	ok($bridge->alive, 'the bridge runs');
};

subtest 'malformed request lines' => sub {
	for my $case ([ 'a header without a colon', "GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", qr/^400$/ ],
		[ 'three words and more', "GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n", qr/^400$/ ],
		[ 'HTTP/9.9', "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", qr/^(400|505)$/ ],
		[ 'no version', "GET /healthz\r\nHost: x\r\n\r\n", qr/^(400|505|no answer)$/ ],
		[ 'binary garbage', do { srand(42); join('', map { chr(int rand 256) } 1 .. 2000) } . "\r\n\r\n", qr/^(400|405|414|431|501|505|no answer)$/ ])
	{
		my ($name, $bytes, $want) = @$case;
		my ($res, $closed) = exchange($bytes, 2);
		like($res->[0] ? $res->[0]{status} : 'no answer', $want, "$name: refused");
	}
	ok($bridge->alive, 'the bridge runs');
	ok(!$good_poll->readable(0), 'the good session\'s poll is still held');
	sql(q{SELECT comet.send('good', '"after the abuse"')});
	my $res = $good_poll->response(5);
	is_deeply($res && [ map { $_->{data} } @{ $res->{json}{packets} } ], ['after the abuse'], 'and gets its packet');
};

# CPU seconds the process used (user + system).
sub cpu_seconds
{
	my ($pid) = @_;
	open(my $f, '<', "/proc/$pid/stat") or return 0;
	my $stat = <$f>;
	$stat =~ s/^.*\)\s+//;
	my @f = split ' ', $stat;
	return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

subtest 'stalled or malformed framing: refused in time, and the bridge stays idle' => sub {
	my @cases = (
		[ 'half the headers', "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le", 'stall' ],
		[ 'half a body', "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"rid\"", 'stall' ],
		[ 'half a chunk', "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n18\r\n{\"ri", 'stall' ],
		[ 'a chunk-size line of 9 KB', "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n18;ext="
			. ('x' x 9000) . "\r\n$body\r\n0\r\n\r\n", 'refuse' ],
		[ 'a chunk-size line of 100 KB', "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n18;ext="
			. ('x' x 100_000) . "\r\n$body\r\n0\r\n\r\n", 'refuse' ],
	);
	for my $case (@cases)
	{
		my ($name, $bytes, $what) = @$case;
		# a bridge of its own: a spinning one would slow the rest of this file
		my $b = start_bridge(args => ['--wait', '10']);
		my $c = $b->connect;
		$c->send_raw($bytes);
		my $res = $c->response(1.5);
		if ($what eq 'refuse')
		{
			local $TODO = 'libmicrohttpd 0.9.75 neither refuses an endless chunk-size line nor '
				. 'times it out before its idle timeout; the bridge no longer spins on it';
			like($res ? $res->{status} : 'no answer within 1.5 s', qr/^(400|413|431)$/, "$name: refused");
		}
		else
		{
			ok(!$res, "$name: waits for the rest");
		}
		my $cpu = cpu_seconds($b->pid);
		sleep 0.8;
		$cpu = (cpu_seconds($b->pid) - $cpu) / 0.8;
		cmp_ok($cpu, '<', 0.25, "$name: the bridge is idle meanwhile (" . sprintf('%.2f', $cpu) . ' s of CPU a second)');
		$c->close;
		sleep 0.2;
		$cpu = cpu_seconds($b->pid);
		sleep 0.8;
		$cpu = (cpu_seconds($b->pid) - $cpu) / 0.8;
		cmp_ok($cpu, '<', 0.25, "$name: and once the client has gone (" . sprintf('%.2f', $cpu) . ' s of CPU a second)');
		my $h = $b->http('GET', '/healthz', timeout => 3);
		is($h && $h->{status}, 200, "$name: the bridge answers others");
		$b->kill_now;
	}
};

# ---- every documented condition, counted ---------------------------------------

subtest 'every documented error condition: status, JSON, message and metric' => sub {
	sql(<<'SQL');
CREATE FUNCTION t23_auth(auth jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF auth ? 'boom' THEN RETURN (1 / 0)::text; END IF;
  RETURN comet.authenticate(auth);
END $$;
CREATE FUNCTION t23_receive(subject text, sid text, channel text, data jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF data = '"slow"' THEN PERFORM pg_sleep(1.5); END IF;
  PERFORM comet.send(channel, data);
END $$;
GRANT EXECUTE ON FUNCTION comet.authenticate(jsonb) TO PUBLIC;
SQL
	my $b = start_bridge(args => ['--wait', '5', '--max-sessions', '3', '--max-pending', '2', '--max-body', '1024',
			'--auth-function', 't23_auth', '--receive-function', 't23_receive', '--allow-origin', 'http://app.example']);
	my $metric = sub { $b->metrics->{"comet_errors_total{condition=\"$_[0]\"}"} // 0 };
	my $provoke = sub {
		my ($name, $status, $condition, $do, %opt) = @_;
		my $before = $metric->($condition);
		my $res = $do->();
		json_error($res, $status, $condition, $name);
		like($res && $res->{headers}{'retry-after'} // '', qr/^\d+$/, "$name: with Retry-After") if $opt{retry_after};
		is($metric->($condition) - $before, 1, "$name: comet_errors_total{condition=\"$condition\"} counts it");
	};
	my $post = sub { my ($body, %h) = @_; $b->http('POST', '/comet', body => ref $body ? encode_json_canonical($body) : $body, %h) };

	$provoke->('not JSON', 400, 'bad-request', sub { $post->('{') });
	$provoke->('a subscribe not granted', 403, 'forbidden', sub { $post->({ rid => 1, subscribe => ['secret'] }) });
	$provoke->('a CORS preflight from an unknown origin', 403, 'forbidden',
		sub { $b->http('OPTIONS', '/comet', headers => { Origin => 'http://evil.example', 'Access-Control-Request-Method' => 'POST' }) });
	$provoke->('an unknown sid', 404, 'item-not-found', sub { $post->({ sid => 'AAAAAAAAAAAAAAAAAAAAAAAA', rid => 1 }) });
	my $s = $b->setup(subscribe => ['c'], wait => 1);
	$provoke->('a rid beyond the window', 404, 'item-not-found', sub { $post->({ sid => $s->sid, rid => $s->last_rid + 5 }) });
	$provoke->('GET /comet', 405, 'method-not-allowed', sub { $b->http('GET', '/comet') });
	$provoke->('a body over --max-body', 413, 'request-too-large', sub { $post->({ rid => 1, pad => 'x' x 2000 }) });

	# 429: a retry of a rid whose work is still running
	$s = $b->setup(subscribe => ['c'], wait => 1);
	my $rid = $s->next_rid;
	my $slow = $b->start_comet({ sid => $s->sid, rid => $rid, send => [ { channel => 'c', data => 'slow' } ] });
	sleep 0.3;
	$provoke->('a retry of a rid still being processed', 429, 'policy-violation',
		sub { $post->({ sid => $s->sid, rid => $rid, send => [ { channel => 'c', data => 'slow' } ] }) });
	my $first = $slow->response(5);
	is($first && $first->{status}, 200, 'the first copy is answered 200 when done');
	$slow->close;
	$s->request(terminate => JSON::PP::true);

	# 410: a queue past --max-pending
	my $o = $b->setup(subscribe => ['c'], wait => 1);
	sql(join '', map { "SELECT comet.send('c', '$_');\n" } 1 .. 4);
	sleep 0.5;
	{
		my $before = $metric->('overflow');
		my ($status, $headers, $json) = $o->request(timeout => 3);
		is($status, 410, 'a queue past --max-pending: 410');
		is($json->{error}, 'overflow', 'overflow');
		ok(length($json->{message} // ''), 'with a message');
		is($metric->('overflow') - $before, 1, 'comet_errors_total{condition="overflow"} counts it');
	}

	$provoke->('an SQL error in the auth function', 500, 'internal-error', sub { $post->({ rid => 1, auth => { boom => 1 } }) });

	# 503: the session limit (three sessions at most)
	my @keep = map { $b->setup(subscribe => []) } 1 .. 3;
	$provoke->('a setup over --max-sessions', 503, 'service-unavailable', sub { $post->({ rid => 1 }) }, retry_after => 1);

	# 503 system-shutdown: a held poll when the bridge stops
	my $held = $keep[0]->start_poll;
	sleep 0.3;
	$b->signal('TERM');
	my $res = $held->response(5);
	json_error($res, 503, 'system-shutdown', 'a held poll at SIGTERM');
	like($res && $res->{headers}{'retry-after'} // '', qr/^\d+$/, 'with Retry-After');
	is($b->wait_exit(5), 0, 'the bridge exits 0');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;

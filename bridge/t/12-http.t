# 12-http.t — the bridge's other HTTP routes and headers: GET /comet.js is
# JavaScript (the built-in client, or the --client file), so is /comet.mjs, GET /healthz says ok, GET /metrics is Prometheus text with
# comet_ metrics, --static serves files (index.html at /) and nothing
# outside its directory; CORS is off unless --allow-origin names the
# origin, and then OPTIONS and POST carry Access-Control-Allow-Origin;
# connections are kept alive.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use Test::More;
use CometTest;

grant('web', ['subscribe']);

my $static = tempdir('comet-static.XXXXXX', TMPDIR => 1, CLEANUP => 1);
sub write_file { open(my $f, '>', $_[0]) or die "$_[0]: $!"; print $f $_[1]; close $f; }
write_file("$static/index.html", "<!doctype html><title>comet test</title>\n");
write_file("$static/style.css", "body { color: black }\n");
mkdir "$static/sub";
write_file("$static/sub/app.js", "console.log('app');\n");
write_file("$static/.secret", "hidden\n");

# --client serves another file as /comet.js
my $client = "$static/comet.js";
write_file($client, "/* comet.js stand-in */ window.Comet = function Comet() {};\n");
my $client_bytes = do { open(my $f, '<', $client) or die; local $/; <$f> };
sub slurp { my ($path) = @_; open(my $f, '<', $path) or die "$path: $!"; local $/; return scalar <$f>; }

my $allowed = 'http://app.example';
my $bridge = start_bridge(args => ['--wait', '10', '--static', $static, '--client', $client,
		'--allow-origin', $allowed, '--allow-origin', 'https://other.example:8443']);

subtest 'GET /comet.js is the client, as JavaScript' => sub {
	my $res = $bridge->http('GET', '/comet.js');
	is($res && $res->{status}, 200, 'status 200') or return;
	like($res->{headers}{'content-type'} // '', qr{^(application|text)/javascript}, 'a JavaScript content type');
	is($res->{body}, $client_bytes, 'the client\'s bytes');
};

subtest 'without --client the built-in client is served, as a script and as a module' => sub {
	my $plain = start_bridge(args => ['--wait', '10']);
	my $res = $plain->http('GET', '/comet.js');
	is($res && $res->{status}, 200, '/comet.js: status 200') or return;
	like($res->{headers}{'content-type'} // '', qr{^text/javascript}, 'JavaScript');
	is($res->{body}, slurp("$FindBin::Bin/../../client/comet.js"), 'the bytes of client/comet.js');
	$res = $plain->http('GET', '/comet.mjs');
	is($res && $res->{status}, 200, '/comet.mjs: status 200') or return;
	like($res->{headers}{'content-type'} // '', qr{^text/javascript}, 'JavaScript');
	is($res->{body}, slurp("$FindBin::Bin/../../client/comet.mjs"), 'the bytes of client/comet.mjs');
	$plain->kill_now;
};

subtest '--connection-memory bounds the request headers' => sub {
	my $setup = CometTest::encode_json_canonical({ rid => 1, subscribe => [] });
	my $try = sub {
		my ($b, $cookie_len) = @_;
		my $c = CometTest::Conn->new($b->port);
		$c->send_request('POST', '/comet', $setup,
			{ 'Content-Type' => 'application/json', Cookie => 'x=' . ('a' x $cookie_len) });
		my $res = $c->response(5);
		$c->close;
		return $res ? $res->{status} : 'no answer';
	};
	my $small = start_bridge(args => ['--wait', '10']);
	is($try->($small, 3000), 200, 'by default a 3 KB cookie is fine');
	is($try->($small, 6000), 431, 'a 6 KB one gets 431');
	ok($small->alive, 'the bridge goes on');
	$small->kill_now;
	my $large = start_bridge(args => ['--wait', '10', '--connection-memory', '32768']);
	is($try->($large, 6000), 200, 'with --connection-memory 32768 a 6 KB cookie is fine');
	$large->kill_now;
};

subtest 'GET /healthz says ok' => sub {
	my $res = $bridge->http('GET', '/healthz');
	is($res && $res->{status}, 200, 'status 200') or return;
	like($res->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
	is($res->{json}{status}, 'ok', '{"status": "ok", ...}');
};

subtest 'GET /metrics is Prometheus text' => sub {
	my $s = $bridge->setup(subscribe => ['web']);
	is($s->status, 200, 'a session exists');
	my $res = $bridge->http('GET', '/metrics');
	is($res && $res->{status}, 200, 'status 200') or return;
	like($res->{headers}{'content-type'} // '', qr{^text/plain}, 'text/plain');
	my @lines = split /\n/, $res->{body};
	my @bad = grep { !/^# (HELP|TYPE) \w+ / && !/^[a-zA-Z_:][\w:]*(\{(\w+="[^"]*",?)*\})? -?[0-9.eE+-]+(\s+\d+)?$/ } @lines;
	is_deeply(\@bad, [], 'every line is a comment or a sample');
	my @comet = grep { /^comet_\w+/ } @lines;
	cmp_ok(scalar @comet, '>', 0, 'there are comet_ metrics');
	my %m = %{ $bridge->metrics };
	my ($sessions) = grep { /^comet_sessions$/ } keys %m;
	is($m{comet_sessions}, 1, 'comet_sessions counts the session') if $sessions;
};

subtest '--static serves files, index.html at /' => sub {
	my $res = $bridge->http('GET', '/');
	is($res && $res->{status}, 200, '/ is 200');
	like($res && $res->{headers}{'content-type'} // '', qr{^text/html}, 'as HTML');
	is($res && $res->{body}, "<!doctype html><title>comet test</title>\n", 'index.html');
	$res = $bridge->http('GET', '/style.css');
	is($res && $res->{status}, 200, '/style.css is 200');
	like($res && $res->{headers}{'content-type'} // '', qr{^text/css}, 'as CSS');
	$res = $bridge->http('GET', '/sub/app.js');
	is($res && $res->{body}, "console.log('app');\n", 'a file in a subdirectory');
	$res = $bridge->http('GET', '/missing.html');
	is($res && $res->{status}, 404, 'a missing file is 404');
};

subtest 'nothing outside the static directory is served' => sub {
	for my $path ('/../../../../etc/passwd', '/%2e%2e/%2e%2e/%2e%2e/etc/passwd', '/sub/../../../../etc/passwd',
		'/..%2f..%2f..%2fetc%2fpasswd', '/.secret', '//etc/passwd')
	{
		my $res = $bridge->http('GET', $path);
		ok(!$res || ($res->{status} >= 400 && $res->{body} !~ /root:|hidden/), "$path is refused")
			or diag explain $res;
	}
};

subtest 'CORS is off for origins not allowed' => sub {
	my ($status, $headers) = $bridge->post_comet({ rid => random_rid(), subscribe => ['web'] });
	is($status, 200, 'a POST without Origin works');
	ok(!exists $headers->{'access-control-allow-origin'}, 'without Access-Control-Allow-Origin');
	($status, $headers) = $bridge->post_comet({ rid => random_rid(), subscribe => ['web'] },
		headers => { Origin => 'http://evil.example' });
	ok(!exists $headers->{'access-control-allow-origin'}, 'an unknown origin gets no Access-Control-Allow-Origin');
	my $res = $bridge->http('OPTIONS', '/comet', headers => { Origin => 'http://evil.example',
			'Access-Control-Request-Method' => 'POST', 'Access-Control-Request-Headers' => 'content-type' });
	ok($res && !exists $res->{headers}{'access-control-allow-origin'}, 'nor on a preflight');
};

subtest 'CORS for an --allow-origin origin' => sub {
	my $res = $bridge->http('OPTIONS', '/comet', headers => { Origin => $allowed,
			'Access-Control-Request-Method' => 'POST', 'Access-Control-Request-Headers' => 'content-type' });
	ok($res && $res->{status} >= 200 && $res->{status} < 300, 'the preflight succeeds') or return;
	is($res->{headers}{'access-control-allow-origin'}, $allowed, 'Access-Control-Allow-Origin is the origin');
	like($res->{headers}{'access-control-allow-methods'} // '', qr/\bPOST\b/, 'POST is allowed');
	like($res->{headers}{'access-control-allow-headers'} // '', qr/content-type/i, 'Content-Type is allowed');
	like($res->{headers}{vary} // '', qr/origin/i, 'Vary: Origin') if exists $res->{headers}{vary};

	my ($status, $headers) = $bridge->post_comet({ rid => random_rid(), subscribe => ['web'] },
		headers => { Origin => $allowed });
	is($status, 200, 'the POST succeeds');
	is($headers->{'access-control-allow-origin'}, $allowed, 'with Access-Control-Allow-Origin');

	($status, $headers) = $bridge->post_comet('not json', headers => { Origin => 'https://other.example:8443' });
	is($status, 400, 'an error answer');
	is($headers->{'access-control-allow-origin'}, 'https://other.example:8443',
		'carries it too, for the second allowed origin');
};

subtest 'the sid may be repeated in the URL (POST /comet?sid=S)' => sub {
	my $s = $bridge->setup(subscribe => ['web'], wait => 1);
	is($s->status, 200, 'setup succeeds') or return;
	my $sid = $s->sid;
	my ($status, undef, $json) = $bridge->post_comet({ sid => $sid, rid => $s->next_rid, subscribe => ['web'] },
		path => "/comet?sid=$sid");
	is($status, 200, 'a request to /comet?sid=S is served');
	ok(ref $json->{results} eq 'ARRAY', 'as the same request without it');
	($status) = $bridge->post_comet({ rid => random_rid(), subscribe => ['web'] }, path => '/comet?sid=');
	ok(defined $status && $status != 500, "a setup with an empty sid in the URL is not an internal error ($status)");
};

subtest 'answers are JSON and connections are kept alive' => sub {
	my $c = $bridge->connect;
	for my $n (1 .. 3)
	{
		$c->send_request('POST', '/comet', CometTest::encode_json_canonical({ rid => random_rid(), subscribe => [] }),
			{ 'Content-Type' => 'application/json' });
		my $res = $c->response(3);
		is($res && $res->{status}, 200, "request $n on one connection is answered");
		like($res && $res->{headers}{'content-type'} // '', qr{^application/json}, 'as JSON');
	}
	$c->send_request('GET', '/healthz');
	my $res = $c->response(3);
	is($res && $res->{status}, 200, 'and a GET after them');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;

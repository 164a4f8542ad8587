# 22-names.t — names that try to be SQL.  Channel names with quotes,
# backslashes, semicolons and whole statements, 63 bytes of quotes or of
# multibyte characters, are only names: granted, they work end to end
# through LISTEN/NOTIFY (durable packets, plain NOTIFYs and sends through
# the bridge), and are UNLISTENed again when their session ends.  Names of
# 64 bytes, empty names and names with control characters are 400
# bad-request wherever a channel name goes.  Configured function names
# that are SQL, tables, functions with another signature or procedures stop
# the bridge at start-up with a clear message, and nothing is executed.
# The database is intact afterwards.
# (00-command-line.t has the missing function and one name with SQL in it.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Time::HiRes qw(time sleep);
use Test::More;
use CometTest;

my $true = JSON::PP::true;

# What the database holds: relations and functions of schema comet, roles,
# tables elsewhere.
sub database_shape
{
	return sql(q{SELECT
		(SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'comet')
		|| ' / ' || (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = 'comet')
		|| ' / ' || (SELECT count(*) FROM pg_roles)
		|| ' / ' || (SELECT coalesce(string_agg(relname, ',' ORDER BY relname), '') FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND relkind = 'r')});
}
my $shape = database_shape();
like($shape, qr/packets:r/, 'comet.packets is there to begin with');

sub q_literal { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }
# a LIKE pattern that matches exactly $name
sub like_exact { my $s = shift; $s =~ s/([\\%_])/\\$1/g; return $s; }

my $bridge = start_bridge(args => ['--wait', '10']);

# ---- channel names that look like SQL ----------------------------------------

my @names = (
	q{x'; DROP TABLE comet.packets; --},
	q{"}, q{\\}, q{\\\\}, q{a\\}, q{;}, q{$$}, q{$1}, q{''}, q{'},
	q{"; UNLISTEN *; --}, q{"); SELECT pg_sleep(10); --}, q{$q$; DROP SCHEMA comet CASCADE; $q$},
	q{semi;colon}, q{back\\slash}, q{quote"in"side}, q{U&"\0061"}, q{E'\\x41'}, q{%}, q{_}, q{*},
	q{ }, q{ leading}, q{trailing }, q{comet}, q{pg_catalog.pg_class},
	'q' x 63, '"' x 63, '\\' x 63, "'" x 63, ";" x 63,
	"\x{20ac}" x 21,			# 63 bytes in 21 characters
	("\x{e9}" x 31) . 'x',		# 63 bytes, 32 characters
	"\x{1f600}" x 15 . 'abc',	# 63 bytes with 4-byte characters
);

subtest 'channel names that look like SQL are only names, end to end' => sub {
	my @too_long = grep { my $b = $_; utf8::encode($b); length $b > 63 } @names;
	is_deeply(\@too_long, [], 'every name fits in 63 bytes');
	sql(join '', map { 'SELECT comet.grant(' . q_literal(like_exact($_)) . ", ARRAY['subscribe', 'publish']);\n" } @names);
	my $s = $bridge->setup(subscribe => \@names, wait => 2);
	is($s->status, 200, 'one session subscribes to all ' . scalar(@names)) or return diag explain $s->response;
	is_deeply($s->response->{subscribed}, \@names, 'the names subscribed are the names given, in order');
	is_deeply([ sort keys %{ $s->response->{positions} } ], [ sort @names ], 'each has a position');
	is($bridge->metrics->{comet_channels_listened}, scalar @names, 'the bridge LISTENs on each');

	# durable packets and plain NOTIFYs, each on its own channel
	my $i = 0;
	sql(join '', map { $i++; 'SELECT comet.send(' . q_literal($_) . ", '{\"n\": $i}');\n"
			. 'SELECT pg_notify(' . q_literal($_) . ", 'plain $i');\n" } @names);
	my $packets = $s->collect(2 * @names, 10);
	my @want = map { my $n = $_ + 1; ([ $names[$_], { n => $n } ], [ $names[$_], "plain $n" ]) } 0 .. $#names;
	is_deeply([ map { [ $_->{channel}, $_->{data} ] } @$packets ], \@want,
		'every packet and every NOTIFY arrives on its exact channel, in order');
	ok(!grep({ exists $_->{seq} && $_->{seq} != 1 } @$packets), 'each durable packet is seq 1 of its channel');

	# sent through the bridge
	my ($status, undef, $json) = $s->request(send => [ map { { channel => $_, data => "via bridge" } } @names ]);
	is($status, 200, 'a send to every name is answered 200');
	is_deeply($json->{results}, [ map { { ok => $true } } @names ], 'every item ok');
	$packets = [ @{ $json->{packets} // [] } ];
	push @$packets, @{ $s->collect(@names - @$packets, 10) } if @$packets < @names;
	is_deeply([ map { [ $_->{channel}, $_->{data}, $_->{seq} ] } @$packets ],
		[ map { [ $_, 'via bridge', 2 ] } @names ], 'and comes back on its channel as seq 2');
	is(sql(q{SELECT count(*) FROM comet.packets}), 2 * @names, 'comet.packets holds exactly those packets');

	($status) = $s->request(unsubscribe => [ @names[0 .. 9] ]);
	is($status, 200, 'unsubscribing ten of them works');
	is($bridge->metrics->{comet_channels_listened}, @names - 10, 'and they are UNLISTENed');
	($status) = $s->request(terminate => $true);
	is($status, 200, 'the session terminates');
	ok(wait_until(sub { ($bridge->metrics->{comet_channels_listened} // -1) == 0 }, 3),
		'and every channel is UNLISTENed again');
	is(database_shape(), $shape, 'the database is intact');
};

subtest 'invalid channel names are 400 wherever a name goes' => sub {
	my @bad = (
		[ '64 bytes of q', 'q' x 64 ],
		[ '64 bytes of quotes', '"' x 64 ],
		[ '64 bytes of backslashes', '\\' x 64 ],
		[ '64 bytes of apostrophes', "'" x 64 ],
		[ '64 bytes in 32 characters', "\x{e9}" x 32 ],
		[ '66 bytes in 22 characters', "\x{20ac}" x 22 ],
		[ 'SQL of 64 bytes', q{x'; DROP TABLE comet.packets; --} . ('-' x 32) ],
		[ 'empty', '' ],
		[ 'a tab', "a\tb" ],
		[ 'a newline', "a\nb" ],
		[ 'a carriage return', "a\rb" ],
		[ 'control character 0x01', "\x01" ],
		[ 'control character 0x1F', "x\x1f" ],
		[ 'DEL 0x7F', "a\x7fb" ],
		[ 'escape 0x1B', "\x1b[31mred" ],
		[ 'NUL', "a\x{0}b" ],
		[ 'NUL then SQL', "ok\x{0}'; DROP TABLE comet.packets; --" ],
	);
	grant('fine', ['subscribe', 'publish']);
	my $s = $bridge->setup(subscribe => ['fine'], wait => 1);
	is($s->status, 200, 'a session') or return;
	for my $case (@bad)
	{
		my ($what, $name) = @$case;
		my $check = sub {
			my ($status, $json, $where) = @_;
			ok(($status // 0) == 400 && ($json->{error} // '') eq 'bad-request'
					&& ($json->{message} // '') =~ /channel|member name/,
				"$what in $where: 400 bad-request, the message says what is wrong")
				or diag(($status // 'no answer') . ' ' . encode_json_canonical($json));
		};
		my ($status, undef, $json) = $bridge->post_comet({ rid => random_rid(), subscribe => [$name] });
		$check->($status, $json, 'a setup\'s subscribe');
		($status, undef, $json) = $bridge->post_comet({ rid => random_rid(), subscribe => ['fine'], resume => { $name => 1 } });
		$check->($status, $json, 'a setup\'s resume');
		for my $item ([ subscribe => [$name] ], [ unsubscribe => [$name] ],
			[ send => [ { channel => $name, data => 1 } ] ],
			[ subscribe => ['fine'], resume => { $name => 0 } ])
		{
			($status, undef, $json) = $bridge->post_comet({ sid => $s->sid, rid => $s->last_rid + 1, @$item });
			$check->($status, $json, "a request's $item->[0]" . (@$item > 2 ? ' with resume' : ''));
		}
	}
	my ($status) = $s->request(send => [ { channel => 'fine', data => 'still' } ]);
	is($status, 200, 'the session goes on');
	is(database_shape(), $shape, 'the database is intact');
};

# ---- configured function names ---------------------------------------------

my $binary = $ENV{COMET_BRIDGE} // 'bridge/comet-bridge';

# Run the bridge with @args until it exits or says it listens (then it is
# stopped: status 'serves'); returns (status, stderr+stdout).
sub run_bridge
{
	my (@args) = @_;
	my $log = "/tmp/comet-t22.$$.log";
	unlink $log;
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $log);
		open(STDERR, '>&', \*STDOUT);
		exec($binary, '--listen', '127.0.0.1:' . CometTest::Bridge::_free_port(), '--db', bridge_db_conninfo(), @args)
			or POSIX::_exit(127);
	}
	my $slurp = sub { open(my $f, '<', $log) or return ''; local $/; my $s = <$f>; $s // '' };
	my $deadline = time + 10;
	my $status;
	while (1)
	{
		my $r = waitpid($pid, POSIX::WNOHANG());
		if ($r == $pid) { $status = $?; last; }
		if ($slurp->() =~ /listening on/ || time > $deadline)
		{
			kill 'TERM', $pid;
			waitpid($pid, 0);
			$status = 'serves';
			last;
		}
		sleep 0.05;
	}
	my $out = $slurp->();
	unlink $log;
	return ($status, $out);
}

sub refused_at_start
{
	my ($status, $out, $name) = @_;
	ok($status ne 'serves' && $status > 0 && ($status & 127) == 0, "$name: the bridge stops with an error")
		or diag("status $status: $out");
	unlike($out, qr/listening on/, "$name: it never served");
}

my @options = ('--auth-function', '--authorize-function', '--receive-function', '--session-function');

subtest 'function names with SQL in them are refused as option values' => sub {
	my @names = ('comet.send; DROP TABLE comet.packets', 'comet.authenticate($1); DROP TABLE comet.packets; --',
		'comet.authenticate(jsonb)', "comet.authenticate'", '"comet"."authenticate"', 'comet.authenticate --',
		'a.b.c', '.authenticate', 'comet.', '', ' comet.authenticate', 'comet .authenticate',
		"comet.authenticate\n", 'pg_sleep(10)', '1abc', "caf\xc3\xa9", 'comet.authenticate/**/', 'x;y',
		'comet.authenticate::text', '$1', 'E\'x\'');
	for my $option (@options)
	{
		for my $name (@names)
		{
			my ($status, $out) = run_bridge($option, $name);
			(my $shown = $name) =~ s/\n/\\n/g;
			refused_at_start($status, $out, "$option '$shown'");
			like($out, qr/\Q$option\E|invalid value/, "$option '$shown': the message names the option");
		}
	}
	is(database_shape(), $shape, 'the database is intact');
};

subtest 'names that are not functions with the signature the bridge calls' => sub {
	sql(<<'SQL');
CREATE TABLE side_effects (at timestamptz DEFAULT clock_timestamp(), what text);
GRANT INSERT ON side_effects TO PUBLIC;
-- the right names, the wrong signatures; each leaves a trace when called
CREATE FUNCTION wrong_auth(auth text) RETURNS text LANGUAGE sql
    AS $$ INSERT INTO side_effects (what) VALUES ('wrong_auth') RETURNING 'x' $$;
CREATE FUNCTION wrong_authorize(subject text, channel text) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO side_effects (what) VALUES ('wrong_authorize') RETURNING true $$;
CREATE FUNCTION wrong_receive(subject text, sid text, channel text, data json) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO side_effects (what) VALUES ('wrong_receive') $$;
CREATE FUNCTION wrong_session(subject text, sid text, event text, channels text) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO side_effects (what) VALUES ('wrong_session') $$;
CREATE VIEW a_view AS SELECT 1 AS x;
CREATE SEQUENCE a_sequence;
SQL
	my %wrong = ('--auth-function' => 'wrong_auth', '--authorize-function' => 'wrong_authorize',
		'--receive-function' => 'wrong_receive', '--session-function' => 'wrong_session');
	for my $option (@options)
	{
		for my $name ($wrong{$option}, 'comet.packets', 'comet.grants', 'pg_catalog.pg_class', 'a_view',
			'a_sequence', 'jsonb', 'comet', 'comet.send', 'pg_catalog.now', 'pg_catalog.pg_terminate_backend')
		{
			my ($status, $out) = run_bridge($option, $name);
			refused_at_start($status, $out, "$option $name");
			like($out, qr/\Q$name\E.*does not exist|does not exist.*\Q$name\E/, "$option $name: the message says it does not exist")
				or diag $out;
		}
	}
	is(sql('SELECT count(*) FROM side_effects'), 0, 'none of them was called');
	is(database_shape(), $shape =~ s{ / ([^/]*)$}{ / side_effects}r, 'the database is intact');
};

subtest 'a procedure with the right argument types is not a function' => sub {
	sql(<<'SQL');
CREATE PROCEDURE proc_auth(auth jsonb) LANGUAGE sql
    AS $$ INSERT INTO side_effects (what) VALUES ('proc_auth') $$;
CREATE PROCEDURE proc_receive(subject text, sid text, channel text, data jsonb) LANGUAGE sql
    AS $$ INSERT INTO side_effects (what) VALUES ('proc_receive') $$;
GRANT EXECUTE ON PROCEDURE proc_auth(jsonb), proc_receive(text, text, text, jsonb) TO PUBLIC;
SQL
	for my $case ([ '--auth-function', 'proc_auth' ], [ '--receive-function', 'proc_receive' ])
	{
		my ($status, $out) = run_bridge(@$case);
		# "SELECT proc_auth($1)" could only ever fail: every setup would be
		# an internal error
		refused_at_start($status, $out, "@$case");
		next unless $status eq 'serves';
		# what it does instead: show it
		my $b = start_bridge(args => [@$case]);
		grant('proc', ['subscribe', 'publish']);
		my $s = $b->setup(subscribe => ['proc']);
		my @what = ('setup: ' . ($s->status // 'none') . ' ' . ($s->{body} // ''));
		if ($s->status == 200)
		{
			my (undef, undef, undef, $body) = $s->request(send => [ { channel => 'proc', data => 1 } ]);
			push @what, "send: $body";
		}
		diag("with @$case the bridge serves; $_") for @what;
		$b->kill_now;
	}
	is(sql('SELECT count(*) FROM side_effects'), 0, 'nothing was executed');
};

subtest 'an authentication function that returns no row' => sub {
	sql(<<'SQL');
CREATE FUNCTION setof_auth(auth jsonb) RETURNS SETOF text LANGUAGE sql AS $$ SELECT 'x' WHERE false $$;
SQL
	my ($status, $out) = run_bridge('--auth-function', 'setof_auth');
	if ($status ne 'serves')
	{
		refused_at_start($status, $out, '--auth-function setof_auth');
		return;
	}
	# it may serve; then a setup must not be told that the database is away
	my $b = start_bridge(args => ['--auth-function', 'setof_auth']);
	my $s = $b->setup(subscribe => []);
	is($s->status, 500, 'a setup gets 500 (the function gave no subject), not 503');
	is($s->response->{error}, 'internal-error', 'internal-error');
	unlike($s->response->{message} // '', qr/unreachable|retry/i, 'and is not told to retry');
	$b->kill_now;
};

is(database_shape() =~ s{ / ([^/]*)$}{}r, $shape =~ s{ / ([^/]*)$}{}r, 'the database is intact at the end');
ok($bridge->alive, 'the bridge still runs');
done_testing;

# 16-database-down.t — while the bridge cannot reach its database: calls
# that need it (a setup) are refused with 503 service-unavailable and
# Retry-After instead of hanging; existing sessions keep polling.  Packets
# committed meanwhile are caught up from the packet table once the bridge
# reconnects, so its sessions miss nothing.
#
# The outage: REVOKE CONNECT on the test database from PUBLIC (the bridge's
# role is not a superuser) and terminate the bridge's backends.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use CometTest;

plan skip_all => 'needs the bridge to run as an unprivileged role'
	if defined $ENV{COMET_TEST_BRIDGE_USER} && $ENV{COMET_TEST_BRIDGE_USER} eq '';

grant('up', ['subscribe', 'publish']);
my $bridge = start_bridge(args => ['--wait', '10']);
my $s = $bridge->setup(subscribe => ['up'], wait => 1);
is($s->status, 200, 'a session before the outage') or BAIL_OUT('no session');
my $db = sql('SELECT current_database()');

sql("REVOKE CONNECT ON DATABASE $db FROM PUBLIC");
my $ended = sql(q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
	WHERE application_name = 'comet-bridge' AND datname = current_database()});
cmp_ok($ended, '>', 0, "the bridge's backends are terminated ($ended)");
sql(q{SELECT comet.send('up', jsonb_build_object('n', i)) FROM generate_series(1, 3) i});

subtest 'while the database is unreachable' => sub {
	my $started = time;
	my ($status, $headers, $json) = $bridge->post_comet({ rid => random_rid(), subscribe => ['up'] },
		timeout => 8);
	my $other = CometTest::Session->new($bridge, 0, $status, $headers, $json);
	ok(defined $status, 'a setup is answered without hanging (within 8 s)');
	is($other->status, 503, 'with 503');
	is($other->response->{error}, 'service-unavailable', 'service-unavailable');
	like($other->{headers}{'retry-after'} // '', qr/^\d+$/, 'and Retry-After');

	($status, undef, $json) = $s->request(timeout => 4);
	is($status, 200, 'an existing session\'s poll is answered');
	ok($bridge->alive, 'the bridge still runs');
};

sql("GRANT CONNECT ON DATABASE $db TO PUBLIC");

subtest 'after the database is back' => sub {
	my @packets;
	my $deadline = time + 20;
	while (@packets < 3 && time < $deadline)
	{
		my ($status, undef, $json, $body) = $s->request(timeout => 4);
		unless (($status // 0) == 200)
		{
			diag('a poll failed: ' . ($status // 'no answer') . ' ' . ($body // ''));
			last;
		}
		push @packets, @{ $json->{packets} // [] };
	}
	is_deeply([ map { $_->{seq} } @packets ], [ 1, 2, 3 ],
		'the session gets the packets committed during the outage, in order');
	my $ok = wait_until(sub { ($bridge->setup(subscribe => ['up'])->status // 0) == 200 }, 10);
	ok($ok, 'setups work again');
	my ($status, undef, $json) = $s->request(send => [ { channel => 'up', data => 'back' } ]);
	is_deeply($json->{results}, [ { ok => JSON::PP::true } ], 'and so does sending');
	# the packet may already ride on the send's own answer (it carries what is queued)
	my @more = @{ $json->{packets} // [] };
	push @more, @{ $s->collect(1, 8) } unless @more;
	is_deeply([ map { $_->{seq} } @more ], [4], 'which arrives as seq 4');
};

done_testing;

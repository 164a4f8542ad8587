# 26-replay-failure.t — catching up a channel is retried until it works,
# and NOTIFYs that arrive meanwhile do not each read the table again.
#
# The bridge's role loses EXECUTE on comet.replay; packets whose wake-up
# carries no data (larger than NOTIFY's payload) then cannot be read.  The
# channel waits (comet_channels_catching_up 1) and nothing is skipped: once
# the grant is back, every packet arrives, once and in order.  While it
# waited, the bridge asked for each range once, not once per NOTIFY
# (pg_stat_user_functions counts the calls).  Last, a forged wake-up far
# ahead of the channel's seq: the catch-up reads what exists and the
# channel goes on.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('big', ['subscribe']);
my $role = CometTest::bridge_role();
# count the bridge's calls of comet.replay (its backends read this setting)
sql(q{DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET track_functions = ''all''', current_database()); END$$});
my $bridge = start_bridge(args => ['--wait', '10']);
my $s = $bridge->setup(subscribe => ['big'], wait => 8);
is($s->status, 200, 'setup succeeds') or BAIL_OUT('no session');

sql(qq{REVOKE EXECUTE ON FUNCTION comet.replay(text, bigint, integer) FROM $role});
my $big = 'x' x 9000;	# over NOTIFY's 8000 bytes: the wake-up carries no data
sql(qq{SELECT comet.send('big', jsonb_build_object('n', 1, 'pad', '$big'))});
ok(wait_until(sub { ($bridge->metrics->{comet_channels_catching_up} // 0) == 1 }, 5),
	'the channel waits for comet.replay, which it may not call');
# small packets behind it: they carry their data, and must wait their turn
sql(qq{SELECT comet.send('big', jsonb_build_object('n', i)) FROM generate_series(2, 40) i});
my $early = $s->collect(1, 1.5);
is_deeply($early, [], 'nothing is delivered out of order meanwhile');
ok($bridge->alive, 'the bridge runs on');

sql(qq{GRANT EXECUTE ON FUNCTION comet.replay(text, bigint, integer) TO $role});
my $packets = $s->collect(40, 10);
is_deeply([ map { $_->{data}{n} } @$packets ], [ 1 .. 40 ],
	'once it may, every packet arrives, once and in order') or diag explain [ map { $_->{seq} } @$packets ];
ok(wait_until(sub { ($bridge->metrics->{comet_channels_catching_up} // -1) == 0 }, 5),
	'and the channel no longer waits');
like($bridge->log_text, qr/catching up channel "big" failed \(trying again\)/,
	'the failure was logged');
# statistics reach pg_stat_user_functions within a second or so of the call
my $calls;
wait_until(sub {
	$calls = sql(q{SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
				   WHERE schemaname = 'comet' AND funcname = 'replay'});
	$calls > 0 }, 5);
note("comet.replay calls that succeeded: $calls");
ok($calls >= 1 && $calls <= 3,
	"the 39 NOTIFYs behind the wait read nothing again: $calls successful replays, not one per NOTIFY");
$s->request(terminate => JSON::PP::true);

# A forged wake-up far ahead (any role may NOTIFY): the catch-up reads what
# exists after the last seq, and the channel goes on; it does not fail for
# ever (a count beyond comet.replay's int) and stall the channel.
grant('victim', ['subscribe']);
my $v = $bridge->setup(subscribe => ['victim'], wait => 2);
is($v->status, 200, 'a session on "victim"') or BAIL_OUT('no session');
sql(q{SELECT comet.send('victim', '"one"')});
is(scalar @{ $v->collect(1, 3) }, 1, 'a packet arrives: the channel has a starting point');
sql(q{NOTIFY victim, 'comet/1 99999999999'});
sql(q{SELECT comet.send('victim', to_jsonb(i)) FROM generate_series(2, 4) i});
my $after = $v->collect(3, 5);
is_deeply([ map { $_->{seq} } @$after ], [ 2, 3, 4 ], 'packets after a forged wake-up far ahead arrive, in order');
ok(wait_until(sub { ($bridge->metrics->{comet_channels_catching_up} // -1) == 0 }, 5),
	'and the channel does not wait for ever');
$v->request(terminate => JSON::PP::true);
done_testing;

# 06-inactivity.t — with --inactivity 2, a session with no request held for
# 2 s is torn down: its requests get 404 item-not-found, the session
# function hears "inactivity" with its channels, and its channel is
# released (/metrics counts no channel listened to; a new session on the
# channel still gets packets).  A session
# that keeps a poll held, even one held longer than the inactivity period,
# lives on.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('idle', ['subscribe']);
grant('idle:%', ['subscribe']);
# presence: the session function records what the bridge tells it
sql(<<'SQL');
CREATE TABLE presence_log (at timestamptz DEFAULT clock_timestamp(), subject text, sid text,
    event text, channels text[]);
CREATE FUNCTION presence(subject text, sid text, event text, channels text[]) RETURNS void
LANGUAGE sql AS $$ INSERT INTO presence_log (subject, sid, event, channels)
    VALUES (subject, sid, event, channels) $$;
GRANT INSERT ON presence_log TO PUBLIC;
SQL

my $bridge = start_bridge(args => ['--wait', '10', '--inactivity', '2',
		'--session-function', 'presence']);

sub events_of
{
	my ($sid) = @_;
	(my $q = $sid) =~ s/'/''/g;
	return [ split /\n/, sql("SELECT event || ' ' || coalesce(array_to_string(channels, ','), '-')"
			. " FROM presence_log WHERE sid = '$q' ORDER BY at") ];
}

subtest 'a silent session ends after the inactivity period' => sub {
	my $s = $bridge->setup(subscribe => ['idle'], wait => 1);
	is($s->status, 200, 'setup succeeds') or return;
	is($s->response->{inactivity}, 2, 'the setup answer says inactivity 2');
	my ($status) = $s->request(timeout => 3);	# held 1 s, answered empty
	is($status, 200, 'a poll is answered');
	sleep 3.5;
	my $json;
	($status, undef, $json) = $s->request(timeout => 3);
	is($status, 404, 'after 3.5 s of silence the session is gone');
	is($json->{error}, 'item-not-found', 'item-not-found');
	my $events = wait_until(sub { my $e = events_of($s->sid); @$e >= 2 ? $e : undef }, 3)
		// events_of($s->sid);
	is(scalar @$events, 2, 'the session function heard two events');
	is($events->[-1], 'inactivity idle', 'the last one is inactivity, with the channel')
		or diag("sid " . $s->sid . "; presence_log:\n" . sql(q{SELECT * FROM presence_log ORDER BY at}));

	# the only session is gone, so nothing needs the channel any more
	my $m = $bridge->metrics;
	my @gauges = grep { /^comet_\w*(channel|listen)\w*$/ && !/_total$/ } keys %$m;
	ok(@gauges, 'a gauge in /metrics counts the channels listened to') or diag explain $m;
	is($m->{$_}, 0, "$_ is 0: the channel was released (UNLISTEN)") for @gauges;
	my @sessions = grep { /^comet_sessions?$/ } keys %$m;
	is($m->{$_}, 0, "$_ is 0") for @sessions;
};

subtest 'the channel of an ended session is released and can be listened to again' => sub {
	my $s = $bridge->setup(subscribe => ['idle'], wait => 5);
	is($s->status, 200, 'a new session on the channel') or return;
	my $poll = $s->start_poll;
	sql(q{SELECT comet.send('idle', '"again"')});
	my $res = $poll->response(3);
	is_deeply($res && $res->{json}{packets}, [ { channel => 'idle', seq => 1, data => 'again' } ],
		'gets the packet');
};

subtest 'a session that keeps polling lives on' => sub {
	my $s = $bridge->setup(subscribe => ['idle:busy'], wait => 1);
	is($s->status, 200, 'setup succeeds') or return;
	for (1 .. 4)
	{
		my ($status) = $s->request(timeout => 3);
		is($status, 200, "poll $_ (each held 1 s) succeeds");
	}
	ok(!grep({ /^inactivity/ } @{ events_of($s->sid) }), 'no inactivity event');
};

subtest 'a poll held longer than the inactivity period keeps the session' => sub {
	my $s = $bridge->setup(subscribe => ['idle:long'], wait => 4);
	is($s->status, 200, 'setup succeeds') or return;
	is($s->response->{wait}, 4, 'wait is 4 s');
	my ($status, undef, $json) = $s->request(timeout => 6);
	is($status, 200, 'a poll held 4 s is answered normally');
	is_deeply($json->{packets}, [], 'empty');
	($status) = $s->request(timeout => 6);
	is($status, 200, 'and the session still exists');
	my @events = @{ events_of($s->sid) };
	ok(!grep({ /^inactivity/ } @events), 'no inactivity event');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;

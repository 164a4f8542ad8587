# 08-terminate.t — {"terminate": true} ends a session: the request is
# answered, a held poll is answered at once, later requests on the sid get
# 404 item-not-found, the session function hears "terminate", and other
# sessions on the same channels go on receiving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use CometTest;

grant('bye', ['subscribe']);
sql(<<'SQL');
CREATE TABLE presence_log (at timestamptz DEFAULT clock_timestamp(), subject text, sid text,
    event text, channels text[]);
CREATE FUNCTION presence(subject text, sid text, event text, channels text[]) RETURNS void
LANGUAGE sql AS $$ INSERT INTO presence_log (subject, sid, event, channels)
    VALUES (subject, sid, event, channels) $$;
GRANT INSERT ON presence_log TO PUBLIC;
SQL
my $bridge = start_bridge(args => ['--wait', '10', '--session-function', 'presence']);

subtest 'terminate ends the session' => sub {
	my $s = $bridge->setup(subscribe => ['bye'], wait => 8);
	is($s->status, 200, 'setup succeeds') or return;
	my $other = $bridge->setup(subscribe => ['bye'], wait => 8);
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.5), 'a poll is held');
	my $started = time;
	my ($status, undef, $json) = $s->request(terminate => JSON::PP::true, timeout => 3);
	is($status, 200, 'terminate is answered 200');
	is(ref $json, 'HASH', 'with a JSON object');
	my $res = $poll->response(2);
	ok($res, 'the held poll is answered');
	cmp_ok(time - $started, '<', 1.5, 'at once');

	($status, undef, $json) = $s->request(timeout => 3);
	is($status, 404, 'a later request gets 404');
	is($json->{error}, 'item-not-found', 'item-not-found');

	my $events = wait_until(sub {
			my $e = sql(q{SELECT string_agg(event || ' ' || array_to_string(channels, ','), ';' ORDER BY at)
				FROM presence_log WHERE sid = } . "'" . $s->sid . "'");
			$e =~ /terminate/ ? $e : undef }, 3);
	like($events // '', qr/;terminate bye$/, 'the session function heard "terminate" with the channel');

	my $opoll = $other->start_poll;
	sql(q{SELECT comet.send('bye', '"still here"')});
	$res = $opoll->response(3);
	is_deeply($res && $res->{json}{packets}, [ { channel => 'bye', seq => 1, data => 'still here' } ],
		'another session on the channel still gets packets');
};

subtest 'terminating an unknown sid' => sub {
	my ($status, undef, $json) = $bridge->post_comet({ sid => 'no-such-session-0123456789abcdef', rid => 7,
			terminate => JSON::PP::true });
	is($status, 404, 'terminate of an unknown sid gets 404');
	is($json->{error}, 'item-not-found', 'item-not-found');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;

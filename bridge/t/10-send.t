# 10-send.t — messages from clients: "send" hands each item to the receive
# function (by default comet.send), so another session subscribed to the
# channel gets it as a packet; each item has its own result.  With
# --receive-function an application's own function decides: a RAISE
# reaches the client with its message; any other SQL error becomes
# internal-error with a generic message (and is logged by the bridge).  A
# receive function that returns json or jsonb answers the client: the value
# is the result's "data".
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

my $true = JSON::PP::true;
grant('chat', ['subscribe', 'publish']);
grant('chat:%', ['subscribe', 'publish']);
grant('quiet', ['subscribe']);

subtest 'the default receive function sends the packet' => sub {
	my $bridge = start_bridge(args => ['--wait', '10']);
	my $reader = $bridge->setup(subscribe => ['chat'], wait => 8);
	my $writer = $bridge->setup(subscribe => [], wait => 8);
	is($reader->status, 200, 'a reader session');
	is($writer->status, 200, 'a writer session') or return;
	my $poll = $reader->start_poll;
	ok(!$poll->readable(0.3), 'the reader\'s poll is held');
	my ($status, undef, $json) = $writer->request(send => [ { channel => 'chat', data => { text => 'hi', n => [ 1, 2.5, undef ] } } ]);
	is($status, 200, 'the send is answered 200');
	is_deeply($json->{results}, [ { ok => $true } ], 'with one ok result');
	my $res = $poll->response(3);
	is_deeply($res && $res->{json}{packets},
		[ { channel => 'chat', seq => 1, data => { text => 'hi', n => [ 1, 2.5, undef ] } } ],
		'the reader gets the packet with its data unchanged');

	($status, undef, $json) = $writer->request(send => [
			{ channel => 'chat', data => 'a' },
			{ channel => 'quiet', data => 'b' },
			{ channel => 'chat:2', data => 'c' } ]);
	is($status, 200, 'a send of three items is answered 200');
	is(scalar @{ $json->{results} // [] }, 3, 'with three results');
	is_deeply($json->{results}[0], { ok => $true }, 'the first is ok');
	is($json->{results}[1]{error}, 'forbidden', 'the second (no publish grant) is forbidden');
	is_deeply($json->{results}[2], { ok => $true }, 'the third is ok');
	my $packets = $reader->collect(1, 3);
	is_deeply([ map { $_->{data} } @$packets ], ['a'], 'the reader of chat gets only its packet');

	($status, undef, $json) = $writer->request(subscribe => ['chat']);
	is_deeply($json->{results}, [ { ok => $true } ], 'the writer subscribes to chat too');
	my $self_poll = $writer->start_poll;
	($status, undef, $json) = $writer->request(send => [ { channel => 'chat', data => 'echo' } ]);
	is($status, 200, 'and sends to it');
	my @got = @{ $json->{packets} // [] };
	my $res2 = $self_poll->response(3);
	push @got, @{ $res2->{json}{packets} // [] } if $res2;
	is_deeply([ map { $_->{data} } @got ], ['echo'], 'the sender, now subscribed, gets its own packet once');
	$bridge->kill_now;
};

sql(<<'SQL');
CREATE FUNCTION picky_receive(subject text, sid text, channel text, data jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF data ? 'refuse' THEN
    RAISE EXCEPTION 'messages may not say %', data->>'refuse';
  END IF;
  IF data ? 'divide' THEN
    PERFORM 1 / (data->>'divide')::int;
  END IF;
  PERFORM comet.send(channel, jsonb_build_object('subject', subject, 'sid', sid, 'said', data));
END $$;
SQL

subtest 'a custom receive function decides' => sub {
	my $bridge = start_bridge(args => ['--wait', '10', '--receive-function', 'picky_receive']);
	grant('chat:alice', ['subscribe', 'publish'], 'alice');
	my $token = sql(q{SELECT comet.issue_token('alice', '1 hour')});
	my $reader = $bridge->setup(subscribe => ['chat:room'], wait => 8);
	my $writer = $bridge->setup(subscribe => [], auth => { token => $token });
	is($writer->status, 200, 'alice has a session') or return;

	my ($status, undef, $json) = $writer->request(send => [ { channel => 'chat:room', data => { text => 'hello' } } ]);
	is_deeply($json->{results}, [ { ok => $true } ], 'an accepted message is ok');
	my $packets = $reader->collect(1, 3);
	is_deeply($packets, [ { channel => 'chat:room', seq => 1,
				data => { subject => 'alice', sid => $writer->sid, said => { text => 'hello' } } } ],
		'the function saw the subject, the sid and the data, and sent what it chose');

	($status, undef, $json) = $writer->request(send => [ { channel => 'chat:room', data => { refuse => 'boo' } } ]);
	is($status, 200, 'a refused message is answered 200');
	my $r = $json->{results}[0] // {};
	ok(defined $r->{error} && $r->{error} ne 'internal-error', "its result is an error (" . ($r->{error} // 'none') . ")")
		or diag explain $json;
	is($r->{message}, 'messages may not say boo', 'with the RAISE message');

	($status, undef, $json) = $writer->request(send => [ { channel => 'chat:room', data => { divide => 0 } } ]);
	is($status, 200, 'a message that breaks the function is answered 200');
	$r = $json->{results}[0] // {};
	is($r->{error}, 'internal-error', 'its result is internal-error');
	ok(defined $r->{message} && $r->{message} !~ /division|zero|22012|picky|plpgsql|line/i,
		"with a generic message (" . ($r->{message} // 'none') . ")");
	ok(wait_until(sub { $bridge->log_text =~ /division by zero/ }, 2), 'the bridge logged the SQL error');

	($status, undef, $json) = $writer->request(send => [ { channel => 'chat:room', data => { text => 'after' } } ]);
	is_deeply($json->{results}, [ { ok => $true } ], 'the next message is fine');
	$packets = $reader->collect(1, 3);
	is_deeply([ map { $_->{data}{said} } @$packets ], [ { text => 'after' } ],
		'only the accepted messages were sent');
	ok($bridge->alive, 'the bridge still runs');
};

sql(<<'SQL');
CREATE FUNCTION answering_receive(subject text, sid text, channel text, data jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
  IF data ? 'silent' THEN
    RETURN NULL;
  END IF;
  RETURN jsonb_build_object('echo', data, 'channel', channel, 'text', 'Grüße, 你好, 👋🏽');
END $$;
CREATE FUNCTION json_receive(subject text, sid text, channel text, data jsonb) RETURNS json
LANGUAGE sql AS $$ SELECT '{"b": 2,  "a": [1, 2]}'::json $$;
SQL

subtest 'a receive function may answer with json or jsonb' => sub {
	my $bridge = start_bridge(args => ['--wait', '10', '--receive-function', 'answering_receive']);
	my $s = $bridge->setup(subscribe => [], wait => 8);
	is($s->status, 200, 'a session') or return;
	my ($status, undef, $json) = $s->request(send => [
			{ channel => 'chat', data => { n => 1 } },
			{ channel => 'chat', data => { silent => 1 } },
			{ channel => 'quiet', data => { n => 3 } } ]);
	is($status, 200, 'the send is answered 200');
	is_deeply($json->{results}, [
			{ ok => $true, data => { echo => { n => 1 }, channel => 'chat', text => "Gr\x{fc}\x{df}e, \x{4f60}\x{597d}, \x{1f44b}\x{1f3fd}" } },
			{ ok => $true },
			{ error => 'forbidden', message => 'not allowed to publish on this channel' } ],
		'its jsonb comes back as the result\'s data; NULL gives a bare ok; publish is still checked');
	$bridge->kill_now;

	$bridge = start_bridge(args => ['--wait', '10', '--receive-function', 'json_receive']);
	$s = $bridge->setup(subscribe => [], wait => 8);
	($status, undef, $json) = $s->request(send => [ { channel => 'chat', data => 1 } ]);
	is_deeply($json->{results}, [ { ok => $true, data => { b => 2, a => [ 1, 2 ] } } ],
		'a json answer comes back too');
	$bridge->kill_now;
};

done_testing;

# 09-access.t — access control through the bridge, deny by default:
# subscribing to a channel nobody granted is 403 forbidden; publishing
# without a grant is a forbidden result and sends nothing; tokens from
# comet.issue_token identify a subject with auth {"token": ...}; a bad,
# revoked or expired token is 403; LIKE patterns grant what they match and
# nothing more; --auth-function and --authorize-function replace the
# defaults.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

my $bridge = start_bridge(args => ['--wait', '10']);
my $true = JSON::PP::true;

sub forbidden_result
{
	my ($result, $name) = @_;
	ok(ref $result eq 'HASH' && ($result->{error} // '') eq 'forbidden'
			&& defined $result->{message} && !ref $result->{message}, $name)
		or diag explain $result;
}

subtest 'subscribing to a channel nobody granted is forbidden' => sub {
	my $s = $bridge->setup(subscribe => ['secret']);
	is($s->status, 403, 'setup gets 403');
	is($s->response->{error}, 'forbidden', 'forbidden');
	ok(defined $s->response->{message}, 'with a message');
	ok(!defined $s->sid, 'and no session');
};

subtest 'a grant opens the channel to anyone' => sub {
	grant('open', ['subscribe']);
	my $s = $bridge->setup(subscribe => ['open']);
	is($s->status, 200, 'anonymous setup succeeds');
	is_deeply($s->response->{subscribed}, ['open'], 'subscribed');
};

subtest 'subscribing later to an ungranted channel is a forbidden result' => sub {
	my $s = $bridge->setup(subscribe => ['open']);
	is($s->status, 200, 'setup succeeds') or return;
	my ($status, undef, $json) = $s->request(subscribe => ['secret']);
	is($status, 200, 'the request is answered 200');
	forbidden_result($json->{results}[0], 'its result is forbidden');
	($status, undef, $json) = $s->request(unsubscribe => ['open']);
	is($status, 200, 'the session goes on');
	is_deeply($json->{results}, [ { ok => $true } ], 'and can unsubscribe');
};

subtest 'publishing without a grant is forbidden and sends nothing' => sub {
	my $s = $bridge->setup(subscribe => ['open']);
	is($s->status, 200, 'setup succeeds') or return;
	my ($status, undef, $json) = $s->request(send => [ { channel => 'open', data => 'hi' } ]);
	is($status, 200, 'the request is answered 200');
	forbidden_result($json->{results}[0], 'its result is forbidden');
	is(sql(q{SELECT comet.last_seq('open')}), 0, 'nothing was sent');

	grant('open', ['publish']);
	($status, undef, $json) = $s->request(send => [ { channel => 'open', data => 'hi' } ]);
	is_deeply($json->{results}, [ { ok => $true } ], 'with a publish grant the send is ok');
	is(sql(q{SELECT comet.last_seq('open')}), 1, 'and the packet was sent');
};

subtest 'a token identifies its subject' => sub {
	grant('private:alice', ['subscribe', 'publish'], 'alice');
	my $alice = sql(q{SELECT comet.issue_token('alice', '1 hour')});
	my $bob = sql(q{SELECT comet.issue_token('bob', '1 hour')});
	like($alice, qr/^[A-Za-z0-9_-]{43}$/, 'a token is 43 URL-safe characters');

	my $s = $bridge->setup(subscribe => ['private:alice']);
	is($s->status, 403, 'anonymous may not subscribe to alice\'s channel');
	$s = $bridge->setup(subscribe => ['private:alice'], auth => { token => $bob });
	is($s->status, 403, 'bob may not either');
	is($s->response->{error}, 'forbidden', 'forbidden');
	$s = $bridge->setup(subscribe => ['private:alice'], auth => { token => $alice });
	is($s->status, 200, 'alice may');
	my ($status, undef, $json) = $s->request(send => [ { channel => 'private:alice', data => 'note' } ]);
	is_deeply($json->{results}, [ { ok => $true } ], 'and may publish there');

	$s = $bridge->setup(subscribe => ['open'], auth => { token => $bob });
	is($s->status, 200, 'a grant to anyone includes bob');
	$s = $bridge->setup(subscribe => ['open'], auth => undef);
	is($s->status, 200, 'auth null is anonymous');
	$s = $bridge->setup(subscribe => ['open'], auth => {});
	is($s->status, 200, 'auth without a token is anonymous');
};

subtest 'a bad, revoked or expired token is refused' => sub {
	my $s = $bridge->setup(subscribe => ['open'], auth => { token => 'not-a-token' });
	is($s->status, 403, 'an unknown token gets 403');
	is($s->response->{error}, 'forbidden', 'forbidden');
	$s = $bridge->setup(subscribe => ['open'], auth => { token => 42 });
	is($s->status, 403, 'a token that is not a string gets 403');

	my $revoked = sql(q{SELECT comet.issue_token('carol', '1 hour')});
	sql("SELECT comet.revoke_token('$revoked')");
	$s = $bridge->setup(subscribe => ['open'], auth => { token => $revoked });
	is($s->status, 403, 'a revoked token gets 403');

	my $short = sql(q{SELECT comet.issue_token('dave', '1 second')});
	$s = $bridge->setup(subscribe => ['open'], auth => { token => $short });
	is($s->status, 200, 'a fresh token works');
	sleep 1.5;
	$s = $bridge->setup(subscribe => ['open'], auth => { token => $short });
	is($s->status, 403, 'the same token after it expired gets 403');
};

subtest 'patterns grant what they match and nothing more' => sub {
	grant('room:%', ['subscribe']);
	grant('desk:42', ['subscribe']);
	is($bridge->setup(subscribe => ['room:1'])->status, 200, 'room:% allows room:1');
	is($bridge->setup(subscribe => ['room:'])->status, 200, 'and room:');
	is($bridge->setup(subscribe => ['roomx'])->status, 403, 'not roomx');
	is($bridge->setup(subscribe => ['desk:42'])->status, 200, 'desk:42 allows desk:42');
	is($bridge->setup(subscribe => ['desk:%'])->status, 403, 'but not the channel named desk:%');
	is($bridge->setup(subscribe => ['desk:4_'])->status, 403, 'nor desk:4_');
	my $mixed = $bridge->setup(subscribe => ['room:1', 'secret']);
	ok($mixed->status == 403
			|| ($mixed->status == 200 && !grep { $_ eq 'secret' } @{ $mixed->response->{subscribed} }),
		'a setup with a forbidden channel among others never subscribes to it')
		or diag explain $mixed->response;
};

subtest 'revoke closes the channel to new subscriptions' => sub {
	grant('temp', ['subscribe']);
	is($bridge->setup(subscribe => ['temp'])->status, 200, 'granted: allowed');
	sql(q{SELECT comet.revoke('temp', ARRAY['subscribe'], NULL)});
	is($bridge->setup(subscribe => ['temp'])->status, 403, 'revoked: forbidden');
};

subtest 'an application\'s own auth and authorize functions' => sub {
	sql(<<'SQL');
CREATE FUNCTION app_auth(auth jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF auth IS NULL OR auth = 'null' THEN RETURN NULL; END IF;
  IF auth->>'password' = 'sesame' THEN RETURN auth->>'user'; END IF;
  RAISE EXCEPTION 'wrong password for %', auth->>'user';
END $$;
CREATE FUNCTION app_authorize(subject text, channel text, action text) RETURNS boolean
LANGUAGE sql AS $$ SELECT channel = 'home:' || subject $$;
SQL
	my $app = start_bridge(args => ['--auth-function', 'app_auth', '--authorize-function', 'app_authorize']);
	my $s = $app->setup(subscribe => ['home:ann'], auth => { user => 'ann', password => 'sesame' });
	is($s->status, 200, 'ann may subscribe to home:ann');
	my ($status, undef, $json) = $s->request(send => [ { channel => 'home:ann', data => 1 } ]);
	is_deeply($json->{results}, [ { ok => $true } ], 'and publish there');
	$s = $app->setup(subscribe => ['home:bob'], auth => { user => 'ann', password => 'sesame' });
	is($s->status, 403, 'but not subscribe to home:bob');
	$s = $app->setup(subscribe => ['home:ann'], auth => { user => 'ann', password => 'guess' });
	is($s->status, 403, 'a refused authentication is 403');
	is($s->response->{error}, 'forbidden', 'forbidden');
	$s = $app->setup(subscribe => ['open']);
	is($s->status, 403, 'the comet grants no longer count');
	$app->kill_now;
};

ok($bridge->alive, 'the bridge still runs');
done_testing;

// grid-o-matic.test.mjs — Grid-o-Matic (examples/grid-o-matic) played in
// headless chromium by two players, alice and bob, each in a browser of
// their own, against a real comet-bridge and a real PostgreSQL.
//
//   1 a wrong password          6 presence: bob closes his page
//   2 two players log in        7 a phone: the layout, a tap-move
//   3 a mouse drag, live        8 the bridge killed and restarted
//   4 a UTF-8 chat line         9 presence after that restart
//   5 refused moves snap back   + no uncaught error in any page
//
// The steps run in order and share the two browsers; each one reads the
// positions it needs from the database, so a failed step does not make
// the next ones fail for no reason of their own.  Every step saves
// screenshots to $COMET_ARTIFACTS (tests/browser/artifacts/ by default).
//
//   node --test --test-reporter=tap tests/browser/*.test.mjs
//   (env: COMET_TEST_DB, COMET_BRIDGE, COMET_ARTIFACTS; see README.md)

import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {
  makeDatabase, startBridge, launchPlayer, cleanup, screenshot, waitFor, sleep, lit,
} from './lib/harness.mjs';

const PASSWORDS = {alice: 'wonderland', bob: 'builder', gm: 'dungeon'};
const CHAT_TEXT = 'Grüße, 你好, 👋🏽';
const CHAT_UTF8_HEX = '4772c3bcc39f652c20e4bda0e5a5bd2c20f09f918bf09f8fbd';

let db = null;
let bridge = null;
let alice = null;
let bob = null;
const everyone = [];      // every player launched, for the page error check

/* A diagnostic line in the TAP output (Node 18's first `it` had no test context). */
function note(t, message) {
  if (t && typeof t.diagnostic === 'function') t.diagnostic(message);
  else console.log(`# ${message}`);
}

/* ---- the page ------------------------------------------------------------------ */

const tid = id => `[data-testid="${id}"]`;
const pieceSel = id => `${tid('piece')}[data-piece-id="${Number(id)}"]`;
const squareSel = (x, y) => `${tid('square')}[data-x="${x}"][data-y="${y}"]`;

function statusOf(page) {
  return page.getAttribute('#connection-status', 'data-status');
}

function onlineUsers(page) {
  return page.$$eval(tid('online-user'), nodes => nodes.map(node => node.dataset.user));
}

/* What the page shows of a piece: the confirmed square and its classes. */
function pieceState(page, id) {
  return page.$eval(pieceSel(id), node => ({
    x: Number(node.dataset.x),
    y: Number(node.dataset.y),
    pending: node.classList.contains('pending'),
    dragging: node.classList.contains('dragging'),
  }));
}

/* Is the piece drawn on square (x, y)?  (the centre of its box is inside the square's) */
async function drawnOn(page, id, x, y) {
  const piece = await page.locator(pieceSel(id)).boundingBox();
  const square = await page.locator(squareSel(x, y)).boundingBox();
  if (!piece || !square) return false;
  const cx = piece.x + piece.width / 2;
  const cy = piece.y + piece.height / 2;
  return cx > square.x && cx < square.x + square.width && cy > square.y && cy < square.y + square.height;
}

/* Wait until the page shows piece id confirmed and drawn on (x, y), not pending. */
async function waitPieceOn(page, id, x, y, timeout, who) {
  await waitFor(async () => {
    const state = await pieceState(page, id);
    return state.x === x && state.y === y && !state.pending && !state.dragging &&
      await drawnOn(page, id, x, y);
  }, timeout, `${who}'s page to show piece ${id} on (${x}, ${y})`, () => pieceState(page, id));
}

async function squareCentre(page, x, y) {
  const box = await page.locator(squareSel(x, y)).boundingBox();
  assert.ok(box, `square (${x}, ${y}) is on the page`);
  return {x: box.x + box.width / 2, y: box.y + box.height / 2};
}

/*
 * Drag piece id from square `from` to square `to` with real mouse moves
 * (press on the piece, move in steps, release over the target square).
 * midway(): called with the piece in the air (for a screenshot).
 */
async function dragPiece(page, id, from, to, midway) {
  const a = await squareCentre(page, from.x, from.y);
  const b = await squareCentre(page, to.x, to.y);
  // the press must land on the piece, not on something drawn over it
  const hit = await page.evaluate(([x, y]) => {
    const node = document.elementFromPoint(x, y);
    const piece = node && node.closest('[data-testid="piece"]');
    return piece ? piece.dataset.pieceId : (node ? node.outerHTML.slice(0, 120) : null);
  }, [a.x, a.y]);
  assert.equal(hit, String(id), `the mouse at the centre of square (${from.x}, ${from.y}) is over piece ${id}`);
  await page.mouse.move(a.x, a.y, {steps: 2});
  await page.mouse.down();
  await page.mouse.move((a.x + b.x) / 2, (a.y + b.y) / 2, {steps: 8});
  if (midway) await midway();
  await page.mouse.move(b.x, b.y, {steps: 8});
  await page.mouse.up();
}

async function logIn(page, user, password) {
  await page.fill(tid('login-user'), user);
  await page.fill(tid('login-password'), password);
  await page.click(tid('login-submit'));
}

/* Logged in: online, the board drawn with every piece, the user named in the top bar. */
async function waitInGame(page, user, pieceCount) {
  await waitFor(async () => (await statusOf(page)) === 'online' &&
                  await page.isHidden(tid('board-loading')) &&
                  (await page.$$(tid('piece'))).length === pieceCount,
                10000, `${user}'s page to be online with the board and ${pieceCount} pieces drawn`,
                async () => ({status: await statusOf(page), pieces: (await page.$$(tid('piece'))).length,
                              error: await page.textContent(tid('login-error'))}));
}

async function waitOnline(page, users, timeout, who) {
  const want = [...users].sort();
  await waitFor(async () => JSON.stringify([...await onlineUsers(page)].sort()) === JSON.stringify(want),
                timeout, `${who}'s online list to be ${want.join(', ')}`, () => onlineUsers(page));
}

/* Record every connection status the page shows from now on, and mark the document. */
function recordStatuses(page) {
  return page.evaluate(() => {
    const node = document.getElementById('connection-status');
    window.__testStatuses = [node.dataset.status];
    window.__testSameDocument = true;
    new MutationObserver(() => {
      const log = window.__testStatuses;
      if (log[log.length - 1] !== node.dataset.status) log.push(node.dataset.status);
    }).observe(node, {attributes: true, attributeFilter: ['data-status']});
  });
}

function recordedStatuses(page) {
  return page.evaluate(() => ({statuses: window.__testStatuses || null,
                               sameDocument: window.__testSameDocument === true}));
}

/* The chat lines the page shows: [{id, author, kind, text}]. */
function chatLines(page) {
  return page.$$eval(tid('chat-line'), nodes => nodes.map(node => ({
    id: Number(node.dataset.chatId),
    kind: node.dataset.kind,
    author: node.querySelector('[data-testid="chat-author"]')?.textContent ?? null,
    text: node.querySelector('[data-testid="chat-text"]').textContent,
  })));
}

/* ---- the database ------------------------------------------------------------- */

/* Every piece of grid 1: Map name -> {id, name, x, y, owner}. */
async function dbPieces() {
  const out = await db.sql(`SELECT id, x, y, coalesce(owner, ''), name FROM grid.pieces
                             WHERE grid_id = 1 ORDER BY id`);
  const pieces = new Map();
  for (const line of out.split('\n')) {
    const [id, x, y, owner, ...name] = line.split('|');
    pieces.set(name.join('|'), {id: Number(id), x: Number(x), y: Number(y), owner: owner || null,
                                name: name.join('|')});
  }
  return pieces;
}

async function dbTerrain() {
  const out = await db.sql(`SELECT array_to_string(terrain, '/') FROM grid.grids WHERE id = 1`);
  return out.split('/');
}

const chebyshev = (a, b) => Math.max(Math.abs(a.x - b.x), Math.abs(a.y - b.y));

/*
 * Free squares of a kind ('.' floor, '#' rock) near `from`, nearest first
 * (at least minDistance away), none of them taken or in `avoid`.
 */
function squaresNear(terrain, pieces, from, kind, {minDistance = 1, avoid = []} = {}) {
  const taken = new Set([...pieces.values()].map(p => `${p.x},${p.y}`));
  for (const a of avoid) taken.add(`${a.x},${a.y}`);
  const found = [];
  terrain.forEach((row, y) => [...row].forEach((ch, x) => {
    const square = {x, y};
    if (ch === kind && !taken.has(`${x},${y}`) && chebyshev(square, from) >= minDistance) found.push(square);
  }));
  return found.sort((a, b) => chebyshev(a, from) - chebyshev(b, from) ||
                              Math.hypot(a.x - from.x, a.y - from.y) - Math.hypot(b.x - from.x, b.y - from.y));
}

async function onlineRows() {
  const out = await db.sql(`SELECT subject, count(*) FROM grid.online GROUP BY subject ORDER BY subject`);
  return out ? Object.fromEntries(out.split('\n').map(l => l.split('|')).map(([s, n]) => [s, Number(n)])) : {};
}

/* ---- the steps ------------------------------------------------------------------- */

describe('Grid-o-Matic in two browsers', () => {
  before(async () => {
    db = await makeDatabase();
    bridge = await startBridge(db);
    [alice, bob] = await Promise.all([launchPlayer('alice'), launchPlayer('bob')]);
    everyone.push(alice, bob);
  }, {timeout: 60000});

  after(async () => {
    await cleanup();
  }, {timeout: 60000});

  it('1. a wrong password shows an error on the login form and opens no session', {timeout: 30000}, async () => {
    const page = alice.page;
    await page.goto(bridge.url);
    await page.waitForSelector(tid('login-form'), {state: 'visible'});
    assert.equal(await page.isHidden(tid('login-error')), true, 'no error before trying');

    await logIn(page, 'alice', 'not-the-password');
    await waitFor(async () => (await page.isVisible(tid('login-error'))) &&
                    (await page.textContent(tid('login-error'))) !== '',
                  10000, 'the login error', () => page.textContent(tid('login-error')));
    await screenshot(page, '01-alice-wrong-password');

    assert.equal(await page.textContent(tid('login-error')), 'wrong user name or password');
    assert.equal(await page.isVisible(tid('login-form')), true, 'the login form is still shown');
    assert.equal(await page.isHidden('#game-view'), true, 'the game is not shown');
    assert.equal(await page.isEnabled(tid('login-submit')), true, 'the form can be tried again');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('grid-o-matic.login')), null,
                 'no login is saved');
    assert.equal(await db.sql(`SELECT count(*) FROM comet.tokens WHERE subject = 'alice'`), '0',
                 'no token was issued to alice');
    assert.deepEqual(await onlineRows(), {}, 'nobody is online on the grid');
  });

  it('2. alice and bob log in in two browsers: grid, online, both in the online list', {timeout: 30000}, async () => {
    const count = (await dbPieces()).size;
    await logIn(alice.page, 'alice', PASSWORDS.alice);
    await bob.page.goto(bridge.url);
    await logIn(bob.page, 'bob', PASSWORDS.bob);

    for (const [player, user] of [[alice, 'alice'], [bob, 'bob']]) {
      const page = player.page;
      await waitInGame(page, user, count);
      assert.equal(await page.isHidden('#login-view'), true, `${user}: the login form is gone`);
      assert.equal(await page.textContent(tid('current-user')), user);
      assert.equal(await page.textContent(tid('grid-name')), 'The Goblin Cave');
      assert.equal(await page.textContent(tid('connection-status')), 'online');
      assert.equal((await page.$$(tid('square'))).length, 12 * 9, `${user}: 12 x 9 squares`);
      // the pieces the player controls wear the "mine" class
      const mine = await page.$$eval(`${tid('piece')}.mine`, nodes => nodes.map(n => n.dataset.owner));
      assert.ok(mine.length > 0 && mine.every(owner => owner === user), `${user} controls only their own pieces`);
    }
    await waitOnline(alice.page, ['alice', 'bob'], 5000, 'alice');
    await waitOnline(bob.page, ['alice', 'bob'], 5000, 'bob');
    assert.deepEqual(await onlineRows(), {alice: 1, bob: 1}, 'grid.online: one session each');
    await screenshot(alice.page, '02-alice-logged-in');
    await screenshot(bob.page, '02-bob-logged-in');
  });

  it("3. a piece alice drags with the mouse appears on its new square in bob's page within 2 s", {timeout: 30000}, async t => {
    const pieces = await dbPieces();
    const aria = pieces.get('Aria the ranger');
    assert.equal(aria.owner, 'alice');
    const terrain = await dbTerrain();
    const [target] = squaresNear(terrain, pieces, aria, '.', {minDistance: 2});
    assert.ok(target, 'a free floor square two squares away');
    await waitPieceOn(alice.page, aria.id, aria.x, aria.y, 5000, 'alice');
    await waitPieceOn(bob.page, aria.id, aria.x, aria.y, 5000, 'bob');

    await dragPiece(alice.page, aria.id, aria, target, async () => {
      const state = await pieceState(alice.page, aria.id);
      assert.equal(state.dragging, true, 'the piece follows the mouse');
      await screenshot(alice.page, '03-alice-dragging');
    });
    const released = Date.now();
    await waitFor(async () => {
      const state = await pieceState(bob.page, aria.id);
      return state.x === target.x && state.y === target.y;
    }, 2000, `bob's page to show Aria on (${target.x}, ${target.y}) within 2 s of the drop`,
    () => pieceState(bob.page, aria.id));
    const elapsed = Date.now() - released;
    note(t, `the move reached bob's page ${elapsed} ms after the mouse was released`);
    await waitPieceOn(bob.page, aria.id, target.x, target.y, 2000, 'bob');
    await waitPieceOn(alice.page, aria.id, target.x, target.y, 2000, 'alice');
    await screenshot(bob.page, '03-bob-sees-the-move');
    await screenshot(alice.page, '03-alice-after-the-move');

    const now = (await dbPieces()).get('Aria the ranger');
    assert.deepEqual({x: now.x, y: now.y}, target, 'the database has the move');
    assert.ok(elapsed < 2000, `arrived in ${elapsed} ms`);
  });

  it(`4. a chat line alice types arrives byte for byte in bob's chat`, {timeout: 30000}, async () => {
    const page = alice.page;
    await page.click(tid('chat-input'));
    await page.keyboard.type(CHAT_TEXT);
    assert.equal(await page.inputValue(tid('chat-input')), CHAT_TEXT, 'alice typed it');
    await page.click(tid('chat-send'));

    const line = await waitFor(async () => {
      const lines = await chatLines(bob.page);
      return lines.find(l => l.author === 'alice' && l.kind === 'say');
    }, 5000, "alice's chat line in bob's page", () => chatLines(bob.page));
    await waitFor(async () => (await page.inputValue(tid('chat-input'))) === '', 5000,
                  "alice's chat input to be cleared after sending");
    await screenshot(page, '04-alice-chat-sent');
    await screenshot(bob.page, '04-bob-chat-received');

    assert.equal(line.text, CHAT_TEXT);
    assert.deepEqual(Buffer.from(line.text, 'utf8'), Buffer.from(CHAT_UTF8_HEX, 'hex'),
                     'the same UTF-8 bytes');
    assert.equal(await db.sql(`SELECT encode(convert_to(text, 'UTF8'), 'hex') FROM grid.chat WHERE id = ${line.id}`),
                 CHAT_UTF8_HEX, 'the database has the same bytes');
    // the line reaches alice by her held poll or with the send's answer, which
    // may come first: wait for it as for bob's
    const mine = await waitFor(async () => (await chatLines(page)).find(l => l.id === line.id), 2000,
                               "alice's own page to show the line", () => chatLines(page));
    assert.equal(mine.text, CHAT_TEXT, "alice's own page shows it too");
  });

  it('5. a refused move shows the database\'s message and snaps back in both pages', {timeout: 45000}, async () => {
    const pieces = await dbPieces();
    const terrain = await dbTerrain();
    const aria = pieces.get('Aria the ranger');
    const borin = pieces.get('Borin the fighter');
    const [rock] = squaresNear(terrain, pieces, aria, '#');
    const [floor] = squaresNear(terrain, pieces, borin, '.', {minDistance: 2});
    const cases = [
      {name: 'taken', piece: aria, to: {x: borin.x, y: borin.y},
       message: 'that square is taken by Borin the fighter'},
      {name: 'rock', piece: aria, to: rock,
       message: 'that square is solid rock'},
      {name: 'not-hers', piece: borin, to: floor,
       message: 'Borin the fighter belongs to bob: only they or the game master can move it'},
    ];
    for (const c of cases) {
      const {piece, to} = c;
      assert.ok(to, `${c.name}: a square to try`);
      await waitPieceOn(alice.page, piece.id, piece.x, piece.y, 5000, 'alice');
      await dragPiece(alice.page, piece.id, piece, to);
      await waitFor(async () => (await alice.page.isVisible(tid('refusal'))) &&
                      (await alice.page.textContent(tid('refusal'))) === c.message,
                    5000, `the refusal "${c.message}"`,
                    async () => ({visible: await alice.page.isVisible(tid('refusal')),
                                  text: await alice.page.textContent(tid('refusal'))}));
      await waitPieceOn(alice.page, piece.id, piece.x, piece.y, 3000, 'alice');
      await screenshot(alice.page, `05-alice-refused-${c.name}`);
      await waitPieceOn(bob.page, piece.id, piece.x, piece.y, 3000, 'bob');
      const now = [...(await dbPieces()).values()].find(p => p.id === piece.id);
      assert.deepEqual({x: now.x, y: now.y}, {x: piece.x, y: piece.y}, `${c.name}: the database did not move it`);
    }
    await screenshot(bob.page, '05-bob-nothing-moved');
    assert.equal(await bob.page.isHidden(tid('refusal')), true, "bob is not shown alice's refusals");
    // the refusal goes away by itself (5 s after the last one)
    await waitFor(() => alice.page.isHidden(tid('refusal')), 7000, 'the refusal to hide by itself');
  });

  it("6. presence: bob closes his page and alice's online list drops him within a few seconds", {timeout: 30000}, async t => {
    await waitFor(async () => (await onlineUsers(alice.page)).includes('bob'), 5000,
                  "bob in alice's online list before he leaves", () => onlineUsers(alice.page));
    const closed = Date.now();
    await bob.page.close();     // pagehide: the client terminates its session
    await waitFor(async () => !(await onlineUsers(alice.page)).includes('bob'), 5000,
                  "alice's online list to drop bob", async () => ({
                    list: await onlineUsers(alice.page), rows: await onlineRows(),
                  }));
    const elapsed = Date.now() - closed;
    note(t, `bob dropped from alice's list ${elapsed} ms after his page closed`);
    await screenshot(alice.page, '06-alice-bob-left');
    assert.deepEqual(await onlineUsers(alice.page), ['alice']);
    assert.deepEqual(await onlineRows(), {alice: 1}, 'grid.online: only alice');
    await bob.close();
  });

  it('7. on a phone (390x844) the game fits the screen and a tap moves a piece', {timeout: 45000}, async () => {
    const phone = await launchPlayer('gm-phone', {
      viewport: {width: 390, height: 844}, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    });
    everyone.push(phone);
    const page = phone.page;
    await page.goto(bridge.url);
    await page.waitForSelector(tid('login-form'), {state: 'visible'});
    await screenshot(page, '07-phone-login');
    await logIn(page, 'gm', PASSWORDS.gm);
    await waitInGame(page, 'gm', (await dbPieces()).size);
    await waitOnline(page, ['alice', 'gm'], 5000, 'gm');
    await waitOnline(alice.page, ['alice', 'gm'], 5000, 'alice');
    await page.evaluate(() => document.fonts.ready);
    await screenshot(page, '07-phone-game');

    assert.equal(await page.textContent(tid('current-user')), 'gm (GM)');
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `no sideways scrolling (the page is ${width} px wide)`);
    const board = await page.locator(tid('board')).boundingBox();
    assert.ok(board.x >= 0 && board.x + board.width <= 390 + 0.5 && board.y >= 0 && board.y + board.height <= 844,
              `the whole board is on screen (${JSON.stringify(board)})`);
    const square = await page.locator(squareSel(0, 0)).boundingBox();
    assert.ok(square.width >= 24, `squares are big enough to touch (${square.width} px)`);

    // the game master taps the wolf, then a free square: alice sees it move
    const pieces = await dbPieces();
    const wolf = pieces.get('Cave wolf');
    const [to] = squaresNear(await dbTerrain(), pieces, wolf, '.', {minDistance: 2});
    const a = await squareCentre(page, wolf.x, wolf.y);
    await page.touchscreen.tap(a.x, a.y);
    await waitFor(() => page.$eval(pieceSel(wolf.id), node => node.classList.contains('selected')), 3000,
                  'the tapped wolf to be selected');
    const b = await squareCentre(page, to.x, to.y);
    await page.touchscreen.tap(b.x, b.y);
    await waitPieceOn(page, wolf.id, to.x, to.y, 3000, 'gm');
    await waitPieceOn(alice.page, wolf.id, to.x, to.y, 3000, 'alice');
    await screenshot(page, '07-phone-after-tap-move');

    await phone.close();
    await waitOnline(alice.page, ['alice'], 5000, 'alice');
  });

  it('8. the bridge restarts: both pages go offline, come back by themselves and show what changed meanwhile', {timeout: 60000}, async t => {
    if (bob.closed) {
      // bob left in step 6: he comes back in a new browser
      bob = await launchPlayer('bob');
      everyone.push(bob);
      await bob.page.goto(bridge.url);
      await logIn(bob.page, 'bob', PASSWORDS.bob);
      await waitInGame(bob.page, 'bob', (await dbPieces()).size);
    }
    const pages = [[alice.page, 'alice'], [bob.page, 'bob']];
    for (const [page, who] of pages) await waitOnline(page, ['alice', 'bob'], 5000, who);
    assert.deepEqual(await onlineRows(), {alice: 1, bob: 1}, 'grid.online before the restart: one session each');
    for (const [page] of pages) await recordStatuses(page);
    const pieces = await dbPieces();
    const terrain = await dbTerrain();
    const boss = pieces.get('Grukk the boss');
    const wolf = pieces.get('Cave wolf');
    const [bossTo] = squaresNear(terrain, pieces, boss, '.', {minDistance: 2});
    const [wolfTo] = squaresNear(terrain, pieces, wolf, '.', {minDistance: 2, avoid: [bossTo]});
    const drum = 'A drum booms 🥁 while the bridge is away';

    await bridge.kill('SIGKILL');
    const killed = Date.now();
    for (const [page, who] of pages) {
      await waitFor(async () => (await statusOf(page)) === 'offline', 10000, `${who}'s page to go offline`,
                    () => statusOf(page));
    }
    await screenshot(alice.page, '08-alice-offline');

    // moves and a chat line while the bridge is away, from psql
    await db.sql(`UPDATE grid.pieces SET x = ${bossTo.x}, y = ${bossTo.y} WHERE id = ${boss.id};
                  UPDATE grid.pieces SET x = ${wolfTo.x}, y = ${wolfTo.y} WHERE id = ${wolf.id};
                  INSERT INTO grid.chat (grid_id, kind, text) VALUES (1, 'system', ${lit(drum)});`);
    await sleep(500);
    for (const [page, who] of pages) {
      assert.equal(await statusOf(page), 'offline', `${who}: still offline while the bridge is away`);
      const state = await pieceState(page, boss.id);
      assert.deepEqual({x: state.x, y: state.y}, {x: boss.x, y: boss.y}, `${who}: nothing arrives meanwhile`);
    }

    await bridge.restart();
    const restarted = Date.now();
    for (const [page, who] of pages) {
      await waitFor(async () => (await statusOf(page)) === 'online', 20000,
                    `${who}'s page to come back online by itself`, () => statusOf(page));
      await waitPieceOn(page, boss.id, bossTo.x, bossTo.y, 5000, who);
      await waitPieceOn(page, wolf.id, wolfTo.x, wolfTo.y, 5000, who);
      await waitFor(async () => (await chatLines(page)).some(l => l.kind === 'system' && l.text === drum),
                    5000, `${who}'s page to show the chat line said while the bridge was away`,
                    () => chatLines(page));
    }
    note(t, `bridge away ${restarted - killed} ms; both pages caught up ${Date.now() - restarted} ms after the restart`);
    await screenshot(alice.page, '08-alice-back-online');
    await screenshot(bob.page, '08-bob-back-online');

    for (const [page, who] of pages) {
      const {statuses, sameDocument} = await recordedStatuses(page);
      assert.equal(sameDocument, true, `${who}: the page was not reloaded`);
      assert.equal(statuses[0], 'online', `${who} started online: ${statuses.join(' → ')}`);
      assert.ok(statuses.includes('offline'), `${who} went offline: ${statuses.join(' → ')}`);
      assert.equal(statuses[statuses.length - 1], 'online', `${who} ends online: ${statuses.join(' → ')}`);
      note(t, `${who}: ${statuses.join(' → ')}`);
    }

    // and the new sessions are live: a move now arrives at once
    const now = await dbPieces();
    const [bossNext] = squaresNear(terrain, now, bossTo, '.', {minDistance: 1});
    await db.sql(`UPDATE grid.pieces SET x = ${bossNext.x}, y = ${bossNext.y} WHERE id = ${boss.id}`);
    for (const [page, who] of pages) await waitPieceOn(page, boss.id, bossNext.x, bossNext.y, 3000, who);
    for (const [page, who] of pages) await waitOnline(page, ['alice', 'bob'], 5000, who);
  });

  it("9. presence after the bridge was killed: the online list is true again (bob leaving drops him)", {timeout: 30000}, async t => {
    // the killed bridge never ended its sessions; the list must not keep them
    await sleep(500);           // let any late online packet arrive
    const badges = await alice.page.$$eval(`${tid('online-user')} .badge[title="sessions"]`,
                                           nodes => nodes.map(n => `${n.parentNode.dataset.user} ${n.textContent}`));
    const rows = await onlineRows();
    note(t, `after the restart: alice's list badges ${JSON.stringify(badges)}, grid.online ${JSON.stringify(rows)}`);
    await screenshot(alice.page, '09-alice-online-list-after-restart');

    await bob.page.close();
    try {
      await waitFor(async () => !(await onlineUsers(alice.page)).includes('bob'), 5000,
                    "alice's online list to drop bob after he closed his page", async () => ({
                      list: await onlineUsers(alice.page), rows: await onlineRows(),
                    }));
    } finally {
      await screenshot(alice.page, '09-alice-bob-left-after-restart');
      await bob.close();
    }
    assert.deepEqual(badges, [], "alice's list showed one session per player after the restart");
    assert.deepEqual(rows, {alice: 1, bob: 1}, 'grid.online after the restart: one row per live session');
  });

  it('no page threw an uncaught error', () => {
    assert.deepEqual(everyone.flatMap(player => player.errors), []);
  });
});

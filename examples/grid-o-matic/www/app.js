/*
 * app.js — Grid-o-Matic in the browser: log in, draw the shared grid, move
 * pieces, change hit points, chat, and apply what the other players do as it
 * commits.  The database decides everything (sql/grid.sql): the page only
 * asks, shows the answer, and shows refusals.
 *
 * Talking to the bridge (comet.js, the API of the product brief, section 4):
 *   - logging in: an anonymous session sends {user, password} on
 *     "grid:login" and gets {token, user} back as the send's answer;
 *   - playing: a session with auth {token} subscribed to "grid:<id>"; moves,
 *     hit point changes and chat lines are sends on that channel; every
 *     change comes back to every player as a packet on it.
 *
 * Missing nothing: the page subscribes first and then asks for the state
 * ({"type": "state"}), which carries the channel's seq as it was before the
 * state was read.  Packets that arrive meanwhile are held back; once the
 * state is drawn, only packets with a higher seq are applied (every packet
 * is idempotent, so one that is also in the state does no harm).  A gap
 * (packets no longer kept) loads the state again.
 *
 * User text only ever reaches the page through textContent and attribute
 * setters, never innerHTML, so any script, accent, CJK or emoji is shown as
 * typed and nothing in it can become markup.
 */
(function () {
  'use strict';

  const SQUARE = 100;                 // SVG units per square
  const DRAG_THRESHOLD_PX = 5;        // a press that moves less is a tap
  const PENDING_TIMEOUT_MS = 4000;    // an accepted move's packet is due by then
  const TOAST_MS = 5000;
  const LOGIN_TIMEOUT_MS = 15000;
  const STORAGE_KEY = 'grid-o-matic.login';
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const gridId = Number(new URLSearchParams(location.search).get('grid')) || 1;
  const channel = `grid:${gridId}`;

  /* ---- small DOM helpers ------------------------------------------------ */

  const $ = id => document.getElementById(id);

  /* An HTML element with attributes and (text only) content. */
  function html(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* An SVG element with attributes. */
  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    return node;
  }

  /* A stable, pleasant colour for a user name. */
  function userColour(name) {
    let hash = 0;
    for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return `hsl(${hash % 360}, 65%, 68%)`;
  }

  function timeOf(iso) {
    const date = new Date(iso);
    return isNaN(date) ? '' : date.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
  }

  /* What to tell the player about a failed send. */
  function messageOf(error) {
    switch (error && error.condition) {
      case 'bad-request': return error.message;          // the game's own refusal
      case 'forbidden': return error.message || 'you may not do that';
      case 'internal-error': return 'something went wrong on the server; try again';
      case 'service-unavailable': return 'the server is busy or restarting; try again shortly';
      case 'closed': return 'not connected';
      case 'timeout': return error.message;
      default: return (error && error.message) || 'that did not work';
    }
  }

  /* ---- refusals --------------------------------------------------------- */

  let toastTimer = null;

  /*
   * Show a message for a few seconds, exactly as the database worded it (CSS
   * capitalizes it); the text stays in the element after it hides.
   */
  function showRefusal(message) {
    const toast = $('refusal');
    toast.replaceChildren(html('span', {class: 'toast-text'}, message));
    toast.hidden = false;
    toast.classList.remove('show');
    void toast.offsetWidth;             // restart the entrance animation
    toast.classList.add('show');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.classList.remove('show'); toast.hidden = true; }, TOAST_MS);
  }

  /* ---- logging in and out ----------------------------------------------- */

  let loginClient = null;             // the anonymous session of the login form

  function savedLogin() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
      return saved && saved.token && saved.user ? saved : null;
    } catch (e) {
      return null;
    }
  }

  function saveLogin(login) {
    if (login) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(login));
    else sessionStorage.removeItem(STORAGE_KEY);
  }

  function showLogin(message) {
    $('game-view').hidden = true;
    $('login-view').hidden = false;
    const error = $('login-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('login-submit').disabled = false;
    $('login-submit').textContent = 'Enter the grid';
    ($('login-user').value.trim() ? $('login-password') : $('login-user')).focus();
  }

  /*
   * Ask the database for a token over an anonymous session.  The session is
   * kept after a refusal (for the next attempt) and closed after a success
   * or when the bridge does not answer in time.
   */
  async function logIn(user, password) {
    if (!loginClient || loginClient.status === 'closed') loginClient = new Comet('/comet', {channels: []});
    const client = loginClient;
    let timer = null;
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('the server does not answer; try again'),
                                                    {condition: 'timeout'})), LOGIN_TIMEOUT_MS);
    });
    let answer;
    try {
      answer = await Promise.race([client.send('grid:login', {user, password}), timeout]);
    } catch (e) {
      if (e.condition !== 'bad-request') forgetLoginClient(client);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    forgetLoginClient(client);
    return answer;
  }

  function forgetLoginClient(client) {
    client.close();
    if (loginClient === client) loginClient = null;
  }

  async function onLoginSubmit(event) {
    event.preventDefault();
    const user = $('login-user').value.trim();
    const password = $('login-password').value;
    const error = $('login-error');
    if (!user || !password) {
      error.textContent = 'Enter your user name and password.';
      error.hidden = false;
      return;
    }
    $('login-submit').disabled = true;
    $('login-submit').textContent = 'Checking…';
    error.hidden = true;
    try {
      const answer = await logIn(user, password);
      const login = {token: answer.token, user: answer.user};
      saveLogin(login);
      $('login-password').value = '';
      startGame(login);
    } catch (e) {
      showLogin(messageOf(e));         // e.g. "wrong user name or password"
      $('login-password').select();
    }
  }

  async function logOut() {
    const client = game.client;
    const token = game.login && game.login.token;
    game.client = null;                 // keep it open for the logout, but deaf
    stopGame();
    saveLogin(null);
    showLogin('');
    if (client) {
      try {
        await client.send('grid:logout', {token});
      } catch (e) {
        // the token expires by itself
      }
      client.close();
    }
  }

  /* ---- the game's state --------------------------------------------------- */

  const game = {
    login: null,          // {token, user}
    client: null,         // the Comet session on the grid's channel
    me: null,             // {user, gm}
    grid: null,           // {id, name, width, height, terrain}
    pieces: new Map(),    // id -> piece row (+ pending: {x, y} while a move is asked)
    chatIds: new Set(),
    online: [],
    selected: null,       // id of the selected piece
    loading: 0,           // generation of the state request in flight, 0: none
    held: [],             // packets that arrived while the state was loading
    seq: 0,               // the last seq applied
  };

  let stateRequests = 0;

  function startGame(login) {
    stopGame();
    game.login = login;
    $('login-view').hidden = true;
    $('game-view').hidden = false;
    $('current-user').textContent = login.user;
    setStatus('connecting');
    const client = new Comet('/comet', {channels: [channel], auth: {token: login.token}});
    let lastError = null;
    game.client = client;
    client.on('status', status => {
      if (game.client !== client) return;
      setStatus(status);
      // closed without our asking: the bridge refused the session for good
      if (status === 'closed') onSessionRefused(lastError);
    });
    client.on('packet', packet => { if (game.client === client) onPacket(packet); });
    client.on('gap', () => { if (game.client === client) loadState(); });
    // an error is final only when the client closes after it (see above);
    // otherwise the client recovers by itself
    client.on('error', error => { lastError = error; });
    loadState();
  }

  function stopGame() {
    const client = game.client;
    game.client = null;                 // first: its closing is ours, not a refusal
    if (client) client.close();
    game.loading = 0;
    game.held = [];
    game.seq = 0;
    game.pieces = new Map();
    game.selected = null;
    cancelDrag();
  }

  /* The session cannot go on: an expired or revoked token, most likely. */
  function onSessionRefused(error) {
    stopGame();
    if (error && error.condition === 'forbidden') {
      saveLogin(null);
      showLogin('Your login has expired or was revoked. Please log in again.');
    } else {
      showLogin(`The connection to the grid failed: ${error ? messageOf(error) : 'closed'}.`);
    }
  }

  function setStatus(status) {
    const node = $('connection-status');
    node.textContent = status;
    node.dataset.status = status;
  }

  /* Ask for the whole state; packets wait until it is drawn (see the top). */
  async function loadState() {
    const client = game.client;
    const generation = ++stateRequests;
    game.loading = generation;
    $('board-loading').hidden = false;
    let state;
    try {
      state = await client.send(channel, {type: 'state'});
    } catch (e) {
      if (game.client !== client || game.loading !== generation) return;
      game.loading = 0;
      if (e.condition === 'closed') return;
      showRefusal(`could not load the grid: ${messageOf(e)}; retrying`);
      setTimeout(() => { if (game.client === client && !game.loading) loadState(); }, 2000);
      return;
    }
    if (game.client !== client || game.loading !== generation) return;
    applyState(state);
    const held = game.held;
    game.held = [];
    game.loading = 0;
    held.forEach(applyIfNew);
    $('board-loading').hidden = true;
  }

  function onPacket(packet) {
    if (packet.channel !== channel) return;
    if (game.loading) game.held.push(packet);
    else applyIfNew(packet);
  }

  /* Apply a packet unless the state (or an earlier packet) already has it. */
  function applyIfNew(packet) {
    if (typeof packet.seq === 'number') {
      if (packet.seq <= game.seq) return;
      game.seq = packet.seq;
    }
    applyPacket(packet.data || {});
  }

  function applyState(state) {
    game.seq = state.seq;
    game.me = state.you;
    game.grid = state.grid;
    $('grid-name').textContent = state.grid.name;
    document.title = `${state.grid.name} · Grid-o-Matic`;
    $('current-user').textContent = state.you.gm ? `${state.you.user} (GM)` : state.you.user;
    drawBoard(state.grid);
    const pending = new Map([...game.pieces].map(([id, piece]) => [id, piece.pending]));
    game.pieces = new Map();
    for (const piece of state.pieces) {
      piece.pending = pending.get(piece.id) || null;
      game.pieces.set(piece.id, piece);
    }
    for (const node of [...$('board').querySelectorAll('.piece')])
      if (!game.pieces.has(Number(node.dataset.pieceId))) node.remove();
    game.pieces.forEach(drawPiece);
    drawPieceList();
    game.chatIds = new Set();
    $('chat-lines').replaceChildren();
    state.chat.forEach(addChatLine);
    scrollChat(true);
    game.online = state.online;
    drawOnline();
  }

  function applyPacket(data) {
    switch (data.type) {
      case 'move': return pieceMoved(data);
      case 'hp': return pieceHp(data);
      case 'piece': return pieceChanged(data.piece);
      case 'removed': return pieceRemoved(data.piece);
      case 'chat': return chatLine(data.line);
      case 'online': game.online = data.users; return drawOnline();
      default: return undefined;        // a newer server's packet: ignore it
    }
  }

  function pieceMoved({piece: id, x, y}) {
    const piece = game.pieces.get(id);
    if (!piece) return;
    piece.x = x;
    piece.y = y;
    piece.pending = null;               // the answer to our own move, or a newer one
    drawPiece(piece);
  }

  function pieceHp({piece: id, hp, max_hp: maxHp}) {
    const piece = game.pieces.get(id);
    if (!piece) return;
    piece.hp = hp;
    piece.max_hp = maxHp;
    drawPiece(piece);
    drawPieceList();
  }

  function pieceChanged(row) {
    const old = game.pieces.get(row.id);
    row.pending = old ? old.pending : null;
    game.pieces.set(row.id, row);
    drawPiece(row);
    drawPieceList();
  }

  function pieceRemoved(id) {
    game.pieces.delete(id);
    const node = pieceNode(id);
    if (node) node.remove();
    if (drag && drag.id === id) cancelDrag();
    if (game.selected === id) game.selected = null;
    drawPieceList();
  }

  function chatLine(line) {
    const list = $('chat-lines');
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    addChatLine(line);
    scrollChat(atBottom || (game.me && line.author === game.me.user));
  }

  /* ---- may I? (only for looks: the database decides) ----------------------- */

  function controls(piece) {
    return !!game.me && (game.me.gm || piece.owner === game.me.user);
  }

  /* ---- the board ------------------------------------------------------------- */

  const TERRAIN = {'.': 'floor', '~': 'water', '#': 'rock'};

  /* Draw the squares of a grid (once per grid; pieces are drawn apart). */
  function drawBoard(grid) {
    const board = $('board');
    const key = `${grid.id}:${grid.width}x${grid.height}:${grid.terrain.join('/')}`;
    if (board.dataset.key === key) return;
    board.dataset.key = key;
    board.setAttribute('viewBox', `0 0 ${grid.width * SQUARE} ${grid.height * SQUARE}`);
    board.style.aspectRatio = `${grid.width} / ${grid.height}`;
    board.replaceChildren(boardDefs());
    const squares = svg('g', {class: 'squares'});
    for (let y = 0; y < grid.height; y++) {
      for (let x = 0; x < grid.width; x++) {
        const terrain = TERRAIN[(grid.terrain[y] || '')[x]] || 'rock';
        const square = svg('rect', {
          class: `square ${terrain}${(x + y) % 2 ? ' alt' : ''}`, x: x * SQUARE, y: y * SQUARE, width: SQUARE, height: SQUARE,
          'data-testid': 'square', 'data-x': x, 'data-y': y, 'data-terrain': terrain,
        });
        squares.append(square);
        if (terrain !== 'floor')
          squares.append(svg('rect', {class: `texture ${terrain}`, x: x * SQUARE, y: y * SQUARE,
                                      width: SQUARE, height: SQUARE}));
      }
    }
    squares.addEventListener('click', onSquareClick);
    board.append(squares, svg('rect', {id: 'drop-target', class: 'drop-target', width: SQUARE,
                                       height: SQUARE, rx: 10, visibility: 'hidden'}),
                 svg('g', {id: 'pieces', class: 'pieces'}));
  }

  function boardDefs() {
    const defs = svg('defs');
    const rock = svg('pattern', {id: 'rock-texture', width: 24, height: 24,
                                 patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(35)'});
    rock.append(svg('rect', {width: 24, height: 24, fill: 'transparent'}),
                svg('line', {x1: 0, y1: 0, x2: 0, y2: 24, stroke: 'rgba(255,255,255,0.05)', 'stroke-width': 8}));
    const water = svg('pattern', {id: 'water-texture', width: 50, height: 26, patternUnits: 'userSpaceOnUse'});
    water.append(svg('path', {d: 'M0 13 q 12.5 -9 25 0 t 25 0', fill: 'none',
                              stroke: 'rgba(190,230,255,0.28)', 'stroke-width': 3}));
    const shade = svg('radialGradient', {id: 'token-shade', cx: '35%', cy: '30%', r: '75%'});
    shade.append(svg('stop', {offset: '0%', 'stop-color': 'white', 'stop-opacity': 0.45}),
                 svg('stop', {offset: '55%', 'stop-color': 'white', 'stop-opacity': 0}),
                 svg('stop', {offset: '100%', 'stop-color': 'black', 'stop-opacity': 0.35}));
    const shadow = svg('filter', {id: 'token-shadow', x: '-30%', y: '-30%', width: '160%', height: '160%'});
    shadow.append(svg('feDropShadow', {dx: 0, dy: 4, stdDeviation: 4, 'flood-color': '#000', 'flood-opacity': 0.55}));
    defs.append(rock, water, shade, shadow);
    return defs;
  }

  function pieceNode(id) {
    return $('board').querySelector(`.piece[data-piece-id="${Number(id)}"]`);
  }

  /* Create or update a piece on the board. */
  function drawPiece(piece) {
    let node = pieceNode(piece.id);
    if (!node) {
      node = svg('g', {class: 'piece', 'data-testid': 'piece', 'data-piece-id': piece.id,
                       tabindex: 0, role: 'button'});
      const body = svg('g', {class: 'piece-body'});
      body.append(svg('circle', {class: 'selection', cx: 50, cy: 46, r: 44}),
                  svg('circle', {class: 'token', cx: 50, cy: 46, r: 35, filter: 'url(#token-shadow)'}),
                  svg('circle', {class: 'shade', cx: 50, cy: 46, r: 35, fill: 'url(#token-shade)'}),
                  svg('circle', {class: 'ring', cx: 50, cy: 46, r: 35}),
                  svg('text', {class: 'glyph', x: 50, y: 47}),
                  svg('rect', {class: 'hp-back', x: 16, y: 86, width: 68, height: 8, rx: 4}),
                  svg('rect', {class: 'hp-bar', x: 16, y: 86, height: 8, rx: 4}),
                  svg('title'));
      node.append(body);
      node.addEventListener('pointerdown', onPiecePointerDown);
      node.addEventListener('keydown', event => {
        if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); select(piece.id); }
      });
      $('pieces').append(node);
    }
    const at = piece.pending || piece;
    node.dataset.x = piece.x;
    node.dataset.y = piece.y;
    node.dataset.hp = piece.hp;
    node.dataset.owner = piece.owner || '';
    node.classList.toggle('mine', controls(piece));
    node.classList.toggle('owned', !!piece.owner);
    node.classList.toggle('down', piece.hp === 0);
    node.classList.toggle('pending', !!piece.pending);
    node.classList.toggle('selected', game.selected === piece.id);
    node.setAttribute('aria-label', `${piece.name}, ${piece.hp} of ${piece.max_hp} hit points`);
    node.querySelector('.token').setAttribute('fill', piece.colour);
    node.querySelector('.glyph').textContent = piece.glyph;
    const share = Math.max(0, Math.min(1, piece.hp / piece.max_hp));
    const bar = node.querySelector('.hp-bar');
    bar.setAttribute('width', Math.max(share > 0 ? 8 : 0, 68 * share));
    bar.setAttribute('class', `hp-bar ${share > 0.5 ? 'good' : share > 0.25 ? 'hurt' : 'bad'}`);
    node.querySelector('title').textContent =
      `${piece.name} · ${piece.hp}/${piece.max_hp} HP · ${piece.owner ? piece.owner : 'game master'}`;
    if (!(drag && drag.id === piece.id && drag.moved)) placeNode(node, at.x, at.y);
  }

  function placeNode(node, x, y) {
    node.style.transform = `translate(${x * SQUARE}px, ${y * SQUARE}px)`;
  }

  /* A refused move: back to where the database says, with a shake. */
  function snapBack(piece) {
    piece.pending = null;
    drawPiece(piece);
    const node = pieceNode(piece.id);
    if (!node) return;
    node.classList.remove('refused');
    void node.getBoundingClientRect();
    node.classList.add('refused');
    setTimeout(() => node.classList.remove('refused'), 700);
  }

  /* ---- selecting, dragging, moving ----------------------------------------------- */

  let drag = null;    // {id, pointerId, startX, startY, offsetX, offsetY, moved}

  function select(id) {
    game.selected = game.selected === id ? null : id;
    $('board').classList.toggle('has-selection', game.selected !== null);
    for (const node of document.querySelectorAll('.piece')) {
      node.classList.toggle('selected', Number(node.dataset.pieceId) === game.selected);
    }
    for (const row of document.querySelectorAll('.piece-row')) {
      row.classList.toggle('selected', Number(row.dataset.pieceId) === game.selected);
    }
  }

  /* The board point (in SVG units) under a pointer event. */
  function boardPoint(event) {
    const board = $('board');
    const point = board.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    return point.matrixTransform(board.getScreenCTM().inverse());
  }

  function onPiecePointerDown(event) {
    if (event.button !== 0 || drag) return;
    const node = event.currentTarget;
    const id = Number(node.dataset.pieceId);
    const piece = game.pieces.get(id);
    if (!piece || piece.pending) return;
    event.preventDefault();
    const point = boardPoint(event);
    drag = {id, node, pointerId: event.pointerId, startX: event.clientX, startY: event.clientY,
            offsetX: point.x - piece.x * SQUARE, offsetY: point.y - piece.y * SQUARE, moved: false};
    node.parentNode.append(node);       // on top of the others (before the capture:
                                        // moving a node in the DOM loses it)
    node.setPointerCapture(event.pointerId);
    window.addEventListener('pointermove', onDragMove);
    window.addEventListener('pointerup', onDragEnd);
    window.addEventListener('pointercancel', cancelDrag);
  }

  function onDragMove(event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    if (!drag.moved && Math.hypot(event.clientX - drag.startX, event.clientY - drag.startY) < DRAG_THRESHOLD_PX)
      return;
    if (!drag.moved) {
      drag.moved = true;
      drag.node.classList.add('dragging');
    }
    const point = boardPoint(event);
    const left = point.x - drag.offsetX;
    const top = point.y - drag.offsetY;
    drag.node.style.transform = `translate(${left}px, ${top}px)`;
    showDropTarget(squareAt(point));
  }

  function onDragEnd(event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const {id, moved} = drag;
    const target = squareAt(boardPoint(event));
    endDrag();
    const piece = game.pieces.get(id);
    if (!piece) return;
    if (!moved) {
      select(id);
      return;
    }
    requestMove(piece, target.x, target.y);
  }

  function endDrag() {
    if (!drag) return;
    const node = drag.node;
    window.removeEventListener('pointermove', onDragMove);
    window.removeEventListener('pointerup', onDragEnd);
    window.removeEventListener('pointercancel', cancelDrag);
    if (node.hasPointerCapture && node.hasPointerCapture(drag.pointerId))
      node.releasePointerCapture(drag.pointerId);
    node.classList.remove('dragging');
    drag = null;
    showDropTarget(null);
  }

  function cancelDrag() {
    if (!drag) return;
    const piece = game.pieces.get(drag.id);
    endDrag();
    if (piece) drawPiece(piece);
  }

  function squareAt(point) {
    return {x: Math.floor(point.x / SQUARE), y: Math.floor(point.y / SQUARE)};
  }

  /* Outline the square a dragged piece would land on. */
  function showDropTarget(square) {
    const target = $('drop-target');
    if (!target) return;
    const grid = game.grid;
    if (!square || !grid || square.x < 0 || square.y < 0 || square.x >= grid.width || square.y >= grid.height) {
      target.setAttribute('visibility', 'hidden');
      return;
    }
    const terrain = TERRAIN[(grid.terrain[square.y] || '')[square.x]] || 'rock';
    const taken = [...game.pieces.values()].some(p => p.id !== (drag && drag.id) && p.x === square.x && p.y === square.y);
    target.setAttribute('x', square.x * SQUARE);
    target.setAttribute('y', square.y * SQUARE);
    target.setAttribute('class', `drop-target ${terrain === 'rock' || taken ? 'bad' : 'good'}`);
    target.setAttribute('visibility', 'visible');
  }

  /* A tap on a square moves the selected piece there. */
  function onSquareClick(event) {
    const square = event.target.closest('.square');
    if (!square || game.selected === null) return;
    const piece = game.pieces.get(game.selected);
    if (!piece || piece.pending) return;
    select(piece.id);                   // deselect: one tap, one move
    requestMove(piece, Number(square.dataset.x), Number(square.dataset.y));
  }

  /*
   * Ask the database to move a piece.  The piece waits on the target square
   * ("pending") until the move's packet arrives, or goes back with the
   * refusal's message.
   */
  async function requestMove(piece, x, y) {
    if (piece.x === x && piece.y === y) {
      drawPiece(piece);
      return;
    }
    const pending = {x, y};
    piece.pending = pending;
    drawPiece(piece);
    try {
      await game.client.send(channel, {type: 'move', piece: piece.id, x, y});
    } catch (e) {
      const current = game.pieces.get(piece.id);
      if (current && current.pending === pending) snapBack(current);
      showRefusal(messageOf(e));
      return;
    }
    setTimeout(() => {
      const current = game.pieces.get(piece.id);
      if (current && current.pending === pending) {
        current.pending = null;
        drawPiece(current);
      }
    }, PENDING_TIMEOUT_MS);
  }

  /* ---- the piece list and hit points -------------------------------------------- */

  function drawPieceList() {
    const list = $('piece-list');
    const pieces = [...game.pieces.values()].sort((a, b) =>
      (a.owner ? 0 : 1) - (b.owner ? 0 : 1) || a.id - b.id);
    list.replaceChildren(...pieces.map(pieceRow));
  }

  function pieceRow(piece) {
    const mine = controls(piece);
    const row = html('li', {class: 'piece-row', 'data-testid': 'piece-row', 'data-piece-id': piece.id});
    row.classList.toggle('selected', game.selected === piece.id);
    row.classList.toggle('down', piece.hp === 0);
    const chip = html('span', {class: 'chip', 'aria-hidden': 'true'}, piece.glyph);
    chip.style.background = piece.colour;
    const name = html('button', {class: 'piece-name', type: 'button', 'data-testid': 'piece-name'});
    name.append(html('span', {class: 'name'}, piece.name),
                html('span', {class: 'owner'}, piece.owner ? piece.owner : 'game master'));
    name.addEventListener('click', () => select(piece.id));
    const share = Math.max(0, Math.min(1, piece.hp / piece.max_hp));
    const meter = html('span', {class: 'meter', 'aria-hidden': 'true'});
    const fill = html('span', {class: `fill ${share > 0.5 ? 'good' : share > 0.25 ? 'hurt' : 'bad'}`});
    fill.style.width = `${share * 100}%`;
    meter.append(fill);
    const hp = html('span', {class: 'hp', 'data-testid': 'piece-hp'}, `${piece.hp}/${piece.max_hp}`);
    const minus = hpButton(piece, -1, mine);
    const plus = hpButton(piece, +1, mine);
    const hpBox = html('span', {class: 'hp-box'});
    hpBox.append(minus, html('span', {class: 'hp-stack'}), plus);
    hpBox.children[1].append(hp, meter);
    row.append(chip, name, hpBox);
    return row;
  }

  function hpButton(piece, delta, mine) {
    const label = `${delta < 0 ? 'Take 1 hit point from' : 'Give 1 hit point to'} ${piece.name}`;
    const button = html('button', {
      class: 'hp-button', type: 'button', 'data-testid': delta < 0 ? 'hp-minus' : 'hp-plus',
      'aria-label': label, title: mine ? label : 'Not your piece',
    }, delta < 0 ? '−' : '+');
    button.disabled = !mine || (delta < 0 ? piece.hp === 0 : piece.hp === piece.max_hp);
    button.addEventListener('click', () => changeHp(piece.id, delta));
    return button;
  }

  async function changeHp(id, delta) {
    try {
      await game.client.send(channel, {type: 'hp', piece: id, delta});
    } catch (e) {
      showRefusal(messageOf(e));
    }
  }

  /* ---- who is online ------------------------------------------------------------- */

  function drawOnline() {
    const list = $('online-list');
    list.replaceChildren(...game.online.map(entry => {
      const item = html('li', {class: 'online-user', 'data-testid': 'online-user', 'data-user': entry.user});
      const avatar = html('span', {class: 'avatar', 'aria-hidden': 'true'}, [...entry.user][0].toUpperCase());
      avatar.style.background = userColour(entry.user);
      item.append(avatar, html('span', {class: 'who'}, entry.user));
      if (entry.gm) item.append(html('span', {class: 'badge gm'}, 'GM'));
      if (game.me && entry.user === game.me.user) item.append(html('span', {class: 'badge you'}, 'you'));
      if (entry.sessions > 1) item.append(html('span', {class: 'badge', title: 'sessions'}, `×${entry.sessions}`));
      return item;
    }));
    if (!game.online.length) list.append(html('li', {class: 'empty'}, 'Nobody yet'));
  }

  /* ---- chat ---------------------------------------------------------------------- */

  function addChatLine(line) {
    if (!line || game.chatIds.has(line.id)) return;
    game.chatIds.add(line.id);
    const item = html('li', {class: `chat-line ${line.kind}`, 'data-testid': 'chat-line',
                             'data-chat-id': line.id, 'data-kind': line.kind});
    if (line.author) {
      const author = html('span', {class: 'author', 'data-testid': 'chat-author'}, line.author);
      author.style.color = userColour(line.author);
      item.append(author);
    }
    if (line.kind === 'roll') item.append(html('span', {class: 'roll-badge'}, 'rolls'));
    item.append(html('span', {class: 'text', 'data-testid': 'chat-text'}, line.text),
                html('time', {datetime: line.sent_at}, timeOf(line.sent_at)));
    // lines arrive in commit order; keep them in id order all the same
    const list = $('chat-lines');
    let before = null;
    for (let node = list.lastElementChild; node && Number(node.dataset.chatId) > line.id;
         node = node.previousElementSibling)
      before = node;
    list.insertBefore(item, before);
    while (list.children.length > 200) list.firstElementChild.remove();
  }

  /* Show the newest line (again after layout settles: fonts, the sidebar). */
  function scrollChat(force) {
    if (!force) return;
    const list = $('chat-lines');
    list.scrollTop = list.scrollHeight;
    requestAnimationFrame(() => { list.scrollTop = list.scrollHeight; });
  }

  async function onChatSubmit(event) {
    event.preventDefault();
    const input = $('chat-input');
    const text = input.value;
    if (!text.trim()) {
      showRefusal('type something first');
      return;
    }
    $('chat-send').disabled = true;
    try {
      await game.client.send(channel, {type: 'chat', text});
      input.value = '';
    } catch (e) {
      showRefusal(messageOf(e));
    } finally {
      $('chat-send').disabled = false;
      input.focus();
    }
  }

  /* ---- start ------------------------------------------------------------------- */

  function start() {
    $('login-form').addEventListener('submit', onLoginSubmit);
    $('logout').addEventListener('click', logOut);
    $('chat-form').addEventListener('submit', onChatSubmit);
    document.addEventListener('keydown', event => {
      if (event.key === 'Escape') { cancelDrag(); if (game.selected !== null) select(game.selected); }
    });
    if (typeof Comet !== 'function') {
      showLogin('The comet client (/comet.js) did not load.');
      return;
    }
    const login = savedLogin();
    if (login) startGame(login);
    else showLogin('');
  }

  start();
})();

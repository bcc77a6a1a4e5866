// Faithful local stand-ins for the sign-in protocols of providers the tests
// cannot reach (Meta, GitHub, Apple, Microsoft, Google), one per process, on
// 127.0.0.1. Prints one JSON line {"base": ..., "port": ...} once ready.
//
// Env:
//   STANDIN        meta | github | apple | microsoft | google
//   CLIENT_ID      the registered client (Apple: the Services ID)
//   CLIENT_SECRET  its secret (meta, github, microsoft, google)
//   REDIRECT_URI   the one registered redirect URI (matched exactly)
//   APPLE_TEAM_ID, APPLE_KEY_ID, APPLE_PUBLIC_KEY (PEM): the team key whose
//                  ES256 client-secret JWTs the Apple stand-in accepts
//   ONLY_AUTH      google/microsoft: the one client authentication method the
//                  token endpoint takes (client_secret_post or _basic)
//   LIST_AUTH      google: token_endpoint_auth_methods_supported, comma-separated
//
// What each one does as its real counterpart does:
//   meta      Facebook Login: /v23.0/dialog/oauth, the code exchanged at
//             /v23.0/oauth/access_token (client id and secret in the form),
//             the profile from /v23.0/me?fields=... with appsecret_proof checked
//   github    /login/oauth/authorize, /login/oauth/access_token (JSON when
//             asked; errors as 200 {"error"}), /user (id an integer, name may be
//             null) and /user/emails; both need a User-Agent
//   apple     OpenID Connect with response_mode=form_post (the answer posted to
//             the callback from this origin), the client secret an ES256 JWT
//             checked against the team key, the name sent in `user` on the
//             first authorization only, email_verified as the string "true",
//             private relay addresses for `relay-` users
//   microsoft the multi-tenant `common` endpoint: discovery says the issuer
//             `{base}/{tenantid}/v2.0`, each ID token's iss names its own tenant
//             and carries `tid`; user `x@contoso` is in one tenant, `x@fabrikam`
//             in another, `x@spoof` gets a token whose iss and tid disagree
//   google    OpenID Connect with `hd` for users of a domain (`x@shop.test`)
// Every login page is a form a browser fills (any username is accepted);
// PKCE S256 is checked whenever the client sent a challenge.
import http from 'node:http';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import * as jose from 'jose';

const kind = process.env.STANDIN;
const clientId = process.env.CLIENT_ID;
const clientSecret = process.env.CLIENT_SECRET || '';
const redirectUri = process.env.REDIRECT_URI;
const brand = { meta: 'Facebook', github: 'GitHub', apple: 'Apple', microsoft: 'Microsoft', google: 'Google' }[kind];
if (!brand) throw new Error(`STANDIN must name a provider, not ${kind}`);

const tenants = {
  contoso: '11111111-2222-4333-8444-555555555555',
  fabrikam: '99999999-8888-4777-8666-555555555555',
};

const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
const kid = `standin-${randomBytes(4).toString('hex')}`;
const jwks = { keys: [{ ...(await jose.exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] };
const applePublic = kind === 'apple' ? await jose.importSPKI(process.env.APPLE_PUBLIC_KEY, 'ES256') : null;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
const base = `http://127.0.0.1:${port}`;

const codes = new Map(); // code -> grant
const tokens = new Map(); // access token -> username
const seen = new Set(); // Apple: users who authorized before (no `user` field again)
const log = [];

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const b64url = (buf) => buf.toString('base64url');
const stableId = (u) => createHash('sha256').update(`${kind}:${u}`).digest();
const numericId = (u) => String(10000000 + (stableId(u).readUInt32BE(0) % 89999999));

function send(res, status, body, headers = {}) {
  const json = typeof body !== 'string';
  res.writeHead(status, { 'content-type': json ? 'application/json' : 'text/html; charset=utf-8', ...headers });
  res.end(json ? JSON.stringify(body) : body);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

const paths = {
  meta: { authorize: '/v23.0/dialog/oauth', token: '/v23.0/oauth/access_token' },
  github: { authorize: '/login/oauth/authorize', token: '/login/oauth/access_token' },
  apple: { authorize: '/auth/authorize', token: '/auth/token' },
  microsoft: { authorize: '/common/oauth2/v2.0/authorize', token: '/common/oauth2/v2.0/token' },
  google: { authorize: '/o/oauth2/v2/auth', token: '/token' },
}[kind];

// The authorization request: checked, then a sign-in form carrying it.
function authorize(url, res) {
  const q = url.searchParams;
  const problem =
    q.get('client_id') !== clientId ? 'unknown client_id'
      : q.get('redirect_uri') !== redirectUri ? `redirect_uri ${q.get('redirect_uri')} is not registered`
        : q.get('response_type') !== 'code' ? 'response_type must be code'
          : !q.get('state') ? 'state is required'
            : q.get('code_challenge') && q.get('code_challenge_method') !== 'S256' ? 'only S256 challenges'
              : kind === 'apple' && q.get('response_mode') !== 'form_post' && /name|email/.test(q.get('scope') || '')
                ? 'response_mode must be form_post when name or email is requested' : null;
  if (problem) return send(res, 400, `<!doctype html><title>Error</title><h1>${esc(problem)}</h1>`);
  log.push({ authorize: Object.fromEntries(q) });
  const hidden = [...q].map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`).join('');
  send(res, 200, `<!doctype html><html lang="en"><head><title>${brand} stand-in sign-in</title></head><body>
<h1>${brand} stand-in</h1><form method="post" action="/login">${hidden}
<label for="username">Username</label> <input id="username" name="username" autofocus>
<button type="submit">Continue</button></form></body></html>`);
}

// The customer signed in: a code, back to the client by redirect or by post.
async function login(req, res) {
  const f = await readForm(req);
  const username = f.get('username') || 'anonymous';
  const code = b64url(randomBytes(24));
  codes.set(code, {
    username, clientId: f.get('client_id'), redirectUri: f.get('redirect_uri'),
    challenge: f.get('code_challenge'), nonce: f.get('nonce'), scope: f.get('scope') || '',
  });
  const state = f.get('state');
  if (f.get('response_mode') === 'form_post') {
    const fields = { code, state };
    if (kind === 'apple' && !seen.has(username)) {
      const [first, ...rest] = username.replace(/^relay-/, '').split('-');
      fields.user = JSON.stringify({ name: { firstName: cap(first), lastName: cap(rest.join(' ') || 'Appleseed') }, email: appleEmail(username) });
    }
    seen.add(username);
    const inputs = Object.entries(fields).map(([k, v]) => `<input type="hidden" name="${k}" value="${esc(v)}">`).join('');
    return send(res, 200, `<!doctype html><html lang="en"><head><title>Redirecting</title></head>
<body onload="document.forms[0].submit()"><form method="post" action="${esc(redirectUri)}">${inputs}
<noscript><button type="submit">Continue</button></noscript></form></body></html>`);
  }
  const to = new URL(f.get('redirect_uri'));
  to.searchParams.set('code', code);
  to.searchParams.set('state', state);
  res.writeHead(302, { location: to.toString() });
  res.end();
}

const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const appleEmail = (u) => (u.startsWith('relay-')
  ? `${stableId(u).toString('hex').slice(0, 10)}@privaterelay.appleid.com`
  : `${u}@example.test`);

// Client authentication as each provider takes it; the reason it fails, or null.
async function clientAuthProblem(req, f) {
  const basic = (req.headers.authorization || '').match(/^Basic (.+)$/);
  if (kind === 'apple') {
    if (basic) return 'Apple takes the client secret in the form';
    if (f.get('client_id') !== clientId) return 'invalid_client';
    try {
      const { payload, protectedHeader } = await jose.jwtVerify(f.get('client_secret') || '', applePublic, {
        algorithms: ['ES256'], issuer: process.env.APPLE_TEAM_ID, audience: base, subject: clientId,
      });
      if (protectedHeader.kid !== process.env.APPLE_KEY_ID) return 'client secret signed with another key';
      if (!payload.iat || payload.exp - payload.iat > 15777000) return 'client secret lives too long';
      log.push({ appleSecret: { iat: payload.iat, exp: payload.exp } });
      return null;
    } catch (e) {
      return `invalid client secret: ${e.code || e.message}`;
    }
  }
  const only = process.env.ONLY_AUTH;
  if (only === 'client_secret_post' && basic) return 'this client authenticates with client_secret_post only';
  if (only === 'client_secret_basic' && !basic) return 'this client authenticates with client_secret_basic only';
  if (basic && (kind === 'microsoft' || kind === 'google')) {
    const [id, secret] = Buffer.from(basic[1], 'base64').toString().split(':').map(decodeURIComponent);
    return id === clientId && secret === clientSecret ? null : 'invalid_client';
  }
  if (basic) return `${brand} takes the client id and secret in the form`;
  return f.get('client_id') === clientId && f.get('client_secret') === clientSecret ? null : 'invalid_client';
}

async function token(req, res) {
  const f = await readForm(req);
  const fail = (status, error) => {
    log.push({ tokenRefused: error });
    // GitHub answers its errors with 200.
    return send(res, kind === 'github' ? 200 : status, { error });
  };
  const authProblem = await clientAuthProblem(req, f);
  if (authProblem) return fail(401, authProblem);
  const grant = codes.get(f.get('code'));
  codes.delete(f.get('code'));
  if (!grant) return fail(400, kind === 'github' ? 'bad_verification_code' : 'invalid_grant');
  if (grant.redirectUri !== f.get('redirect_uri')) return fail(400, 'redirect_uri mismatch');
  if (grant.challenge) {
    const verifier = f.get('code_verifier') || '';
    if (b64url(createHash('sha256').update(verifier).digest()) !== grant.challenge) return fail(400, 'PKCE verification failed');
  }
  log.push({ token: { pkce: !!grant.challenge, user: grant.username } });
  const access = b64url(randomBytes(24));
  tokens.set(access, grant.username);
  if (kind === 'meta') return send(res, 200, { access_token: access, token_type: 'bearer', expires_in: 5183944 });
  if (kind === 'github') return send(res, 200, { access_token: access, token_type: 'bearer', scope: grant.scope.replace(/ /g, ',') });
  return send(res, 200, {
    access_token: access, token_type: 'Bearer', expires_in: 3600,
    id_token: await idToken(grant),
  });
}

async function idToken(grant) {
  const u = grant.username;
  const now = Math.floor(Date.now() / 1000);
  let claims = { aud: clientId, iat: now, exp: now + 600, nonce: grant.nonce };
  let iss = base;
  if (kind === 'apple') {
    const email = appleEmail(u);
    claims = {
      ...claims, sub: `001234.${stableId(u).toString('hex').slice(0, 32)}.0456`, email,
      email_verified: 'true', auth_time: now, nonce_supported: true,
      ...(email.endsWith('@privaterelay.appleid.com') ? { is_private_email: 'true' } : {}),
    };
  } else if (kind === 'microsoft') {
    const [name, org] = u.split('@');
    const tid = org === 'fabrikam' || org === 'spoof' ? tenants.fabrikam : tenants.contoso;
    const issTenant = org === 'spoof' ? tenants.contoso : tid;
    iss = `${base}/${issTenant}/v2.0`;
    claims = {
      ...claims, sub: b64url(stableId(u)).slice(0, 43), oid: stableId(u).toString('hex').slice(0, 32), tid,
      ver: '2.0', name: cap(name), preferred_username: `${name}@${org}.test`, email: `${name}@${org}.test`,
    };
  } else {
    const [name, domain] = u.includes('@') ? u.split('@') : [u, null];
    claims = {
      ...claims, sub: numericId(u) + numericId(`${u}!`), email: `${name}@${domain || 'gmail.test'}`,
      email_verified: true, name: cap(name), ...(domain ? { hd: domain } : {}),
    };
  }
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).setIssuer(iss).sign(privateKey);
}

function bearer(req, url) {
  const h = (req.headers.authorization || '').match(/^(?:Bearer|token) (.+)$/i);
  const t = h ? h[1] : url.searchParams.get('access_token');
  return { token: t, user: t ? tokens.get(t) : undefined };
}

function graphMe(req, url, res) {
  const { token: t, user } = bearer(req, url);
  if (!user) return send(res, 400, { error: { message: 'Invalid OAuth access token.', type: 'OAuthException', code: 190 } });
  const proof = createHmac('sha256', clientSecret).update(t).digest('hex');
  if (url.searchParams.get('appsecret_proof') !== proof) {
    return send(res, 400, { error: { message: 'Invalid appsecret_proof provided in the API argument', type: 'GraphMethodException', code: 100 } });
  }
  const all = { id: numericId(user), name: user.split('-').map(cap).join(' '), email: `${user}@example.test` };
  if (user.startsWith('noemail-')) delete all.email;
  const fields = (url.searchParams.get('fields') || 'id,name').split(',');
  send(res, 200, Object.fromEntries(fields.filter((k) => k in all).map((k) => [k, all[k]])));
}

function githubApi(req, url, res) {
  if (!req.headers['user-agent']) {
    return send(res, 403, { message: 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header.' });
  }
  const { user } = bearer(req, url);
  if (!user) return send(res, 401, { message: 'Bad credentials' });
  if (url.pathname === '/user') {
    return send(res, 200, {
      login: user, id: Number(numericId(user)), name: user.startsWith('noname-') ? null : user.split('-').map(cap).join(' '),
      email: null, type: 'User',
    });
  }
  send(res, 200, [
    { email: `${user}+old@example.test`, primary: false, verified: true, visibility: null },
    { email: `${user}@example.test`, primary: true, verified: !user.startsWith('unverified-'), visibility: 'public' },
  ]);
}

function discovery(res) {
  if (kind === 'microsoft') {
    return send(res, 200, {
      issuer: `${base}/{tenantid}/v2.0`,
      authorization_endpoint: `${base}${paths.authorize}`, token_endpoint: `${base}${paths.token}`,
      jwks_uri: `${base}/common/discovery/v2.0/keys`, response_types_supported: ['code', 'id_token'],
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      id_token_signing_alg_values_supported: ['RS256'],
    });
  }
  send(res, 200, {
    issuer: base, authorization_endpoint: `${base}${paths.authorize}`, token_endpoint: `${base}${paths.token}`,
    jwks_uri: `${base}/keys`, response_types_supported: ['code'],
    response_modes_supported: kind === 'apple' ? ['query', 'fragment', 'form_post'] : ['query'],
    token_endpoint_auth_methods_supported: process.env.LIST_AUTH ? process.env.LIST_AUTH.split(',')
      : kind === 'apple' ? ['client_secret_post'] : ['client_secret_basic', 'client_secret_post'],
    id_token_signing_alg_values_supported: ['RS256'],
  });
}

server.on('request', (req, res) => {
  const url = new URL(req.url, base);
  const p = url.pathname;
  const done = (e) => { send(res, 500, { error: String(e) }); };
  if (p === '/_test/log') return send(res, 200, log);
  if (req.method === 'GET' && p === paths.authorize) return authorize(url, res);
  if (req.method === 'POST' && p === '/login') return login(req, res).catch(done);
  if (req.method === 'POST' && p === paths.token) return token(req, res).catch(done);
  if (kind === 'meta' && p === '/v23.0/me') return graphMe(req, url, res);
  if (kind === 'github' && (p === '/user' || p === '/user/emails')) return githubApi(req, url, res);
  if (p === '/.well-known/openid-configuration' && kind !== 'microsoft' && kind !== 'meta' && kind !== 'github') return discovery(res);
  if (p === '/common/v2.0/.well-known/openid-configuration' && kind === 'microsoft') return discovery(res);
  if (p === '/keys' || p === '/common/discovery/v2.0/keys') return send(res, 200, jwks);
  send(res, 404, { error: 'not_found' });
});
process.stdout.write(JSON.stringify({ base, port }) + '\n');

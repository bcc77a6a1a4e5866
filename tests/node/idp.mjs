// A real OpenID provider for Omnigate's end-to-end tests (npm oidc-provider).
// Listens on 127.0.0.1 (port from IDP_PORT, default ephemeral) and prints one
// JSON line {"issuer": ..., "port": ...} once ready.
//
// Env:
//   IDP_PORT     fixed port (to restart the same issuer, e.g. for key rotation)
//   IDP_KEYS     file holding the private JWKS; created if missing. With
//                IDP_ROTATE=1 a new key pair is put first (signs) and the old
//                ones are kept (still published).
//   IDP_CLIENTS  JSON array of client metadata (client_id, client_secret,
//                redirect_uris, id_token_signed_response_alg, ...)
//   IDP_AUDIENCE resource (audience) for JWT access tokens (client_credentials)
//
// Test-only endpoint: POST /_test/sign {"claims": {...}, "alg": "RS256"|"ES256"}
// signs claims with the provider's current key for that algorithm, so tests can
// present tokens with chosen subjects, lifetimes or audiences.
import http from 'node:http';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import * as jose from 'jose';
import { Provider } from 'oidc-provider';

async function newKeys() {
  const out = [];
  for (const alg of ['RS256', 'ES256']) {
    const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
    const jwk = await jose.exportJWK(privateKey);
    out.push({ ...jwk, kid: `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`, alg, use: 'sig' });
  }
  return out;
}

async function loadKeys() {
  const file = process.env.IDP_KEYS;
  let keys = file && existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).keys : null;
  if (!keys) keys = await newKeys();
  else if (process.env.IDP_ROTATE === '1') keys = [...(await newKeys()), ...keys];
  if (file) writeFileSync(file, JSON.stringify({ keys }), { mode: 0o600 });
  return keys;
}

const keys = await loadKeys();
const audience = process.env.IDP_AUDIENCE || 'https://api.omnigate.test';
const clients = JSON.parse(process.env.IDP_CLIENTS || '[]');

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.env.IDP_PORT || 0), '127.0.0.1', resolve));
const port = server.address().port;
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'email', 'profile', 'offline_access', 'orders:read', 'orders:write'],
  pkce: { required: () => true },
  // Outgoing calls (back-channel logout) go to the gateway on 127.0.0.1,
  // which the provider's SSRF guard refuses; tests run on loopback only.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // Plain pages: the defaults load web fonts, and tests have no Internet.
      async logoutSource(ctx, form) {
        ctx.body = `<!doctype html><html lang="en"><head><title>Test IdP sign-out</title></head><body>
<h1>Sign out of Test IdP?</h1>${form}
<button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = '<!doctype html><html lang="en"><head><title>Signed out</title></head><body><h1>Signed out of Test IdP</h1></body></html>';
      },
    },
    // Logout tokens to clients that register a backchannel_logout_uri; with
    // backchannel_logout_session_required, ID tokens carry `sid`.
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'orders:read orders:write',
        audience,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: true, name: `Test ${id}` };
      },
    };
  },
});
provider.proxy = false;
// Back-channel deliveries show in the provider log the tests print on failure.
provider.on('backchannel.success', (ctx, client) => console.error(`backchannel logout delivered to ${client.clientId}`));
provider.on('backchannel.error', (ctx, err, client) => console.error(`backchannel logout to ${client.clientId} failed: ${err} ${err.cause || ""}`));
provider.on('end_session.error', (ctx, err) => console.error(`end_session error: ${err}`));

const current = (alg) => keys.find((k) => k.alg === alg);

async function testSign(req, res) {
  let body = '';
  for await (const chunk of req) body += chunk;
  try {
    const { claims, alg = 'RS256' } = JSON.parse(body);
    const jwk = current(alg);
    const key = await jose.importJWK(jwk, alg);
    const token = await new jose.SignJWT(claims).setProtectedHeader({ alg, kid: jwk.kid, typ: 'JWT' }).sign(key);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token }));
  } catch (e) {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: String(e) }));
  }
}

// Interaction UI: a login form a browser can fill (any username is accepted),
// then consent is granted automatically for what the client asked.
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (req.method === 'GET' && prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    return res.end(`<!doctype html><html lang="en"><head><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1><form method="post" action="/interaction/${esc(uid)}/login">
<label for="username">Username</label> <input id="username" name="username" autofocus>
<button type="submit">Sign in</button></form></body></html>`);
  }
  if (req.method === 'POST' && req.url.endsWith('/login')) {
    let body = '';
    for await (const chunk of req) body += chunk;
    const username = new URLSearchParams(body).get('username') || 'anonymous';
    return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  res.writeHead(400, { 'content-type': 'text/plain' });
  res.end(`unexpected interaction ${prompt.name}`);
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'POST' && req.url === '/_test/sign') return testSign(req, res);
  if (req.url.startsWith('/interaction/')) {
    return interaction(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); });
  }
  return callback(req, res);
});
process.stdout.write(JSON.stringify({ issuer, port }) + '\n');

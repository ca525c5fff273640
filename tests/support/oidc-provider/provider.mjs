// A local, Entra-shaped OpenID provider for the end-to-end tests: node `oidc-provider` (panva,
// a certified OP that nobody on this project wrote), one Provider per fake Entra tenant, each with
// the issuer `http://127.0.0.1:PORT/<tid>/v2.0`, plus Microsoft's v2 admin-consent endpoint.
// Started by the tests (tests/e2e/oidc_provider.rs); prints `ready` on stdout once it listens.
//
// Env: PORT (required); REDIRECT_URIS (comma-separated); TENANTS (comma-separated tenant GUIDs).
// Sign-in is automatic: `login_hint` picks the account, consent is granted, every authorization
// request starts a fresh session (so the hint always decides, like a new browser profile).
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const PORT = Number(process.env.PORT);
if (!Number.isInteger(PORT) || PORT <= 0) {
  console.error('PORT must be set to the port to listen on');
  process.exit(2);
}
const list = (value, fallback) => (value || fallback).split(',').map((s) => s.trim()).filter(Boolean);
const REDIRECT_URIS = list(process.env.REDIRECT_URIS, 'https://finteqx.test/sign_in/entra/callback');

const CONTOSO = '11111111-1111-1111-1111-111111111111';
const FABRIKAM = '22222222-2222-2222-2222-222222222222';
const DECLINING = '33333333-3333-3333-3333-333333333333'; // its administrator declines admin consent
const TENANTS = list(process.env.TENANTS, [CONTOSO, FABRIKAM, DECLINING].join(','));

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';

// tid → login_hint → account. `email` is the primary SMTP address (Graph `mail`); `upn` the UPN;
// `preferred_username` is what the user typed (the hint). Guests carry `idp` (their home tenant's
// issuer) and `acct: 1`; Entra omits `idp` for home-tenant users and sends `acct: 0`.
const ACCOUNTS = {
  [CONTOSO]: {
    'alice@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000001', name: 'Alice Contoso', email: 'alice@contoso.com', upn: 'alice@contoso.com', xms_edov: true },
    // An alias (proxyAddress) of alice: same user, same oid and sub, e-mail claim = primary.
    'al@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000001', name: 'Alice Contoso', email: 'alice@contoso.com', upn: 'alice@contoso.com', xms_edov: true },
    'bob@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000002', name: 'Bob Contoso', email: 'bob@contoso.com', upn: 'bob@contoso.com', xms_edov: true },
    // A second Entra user of the same tenant whose e-mail claim equals alice's.
    'mallory@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000003', name: 'Mallory Contoso', email: 'alice@contoso.com', upn: 'mallory@contoso.com', xms_edov: true },
    // A B2B guest from another tenant.
    'guest@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000004', name: 'Guest User', email: 'guest@contoso.com', upn: 'guest_contoso.com#EXT#@contoso.com', xms_edov: true, guest: true, idp: 'https://sts.windows.net/99999999-9999-9999-9999-999999999999/' },
    'unverified@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000005', name: 'Unverified Contoso', email: 'unverified@contoso.com', upn: 'unverified@contoso.com', xms_edov: false },
    'noconsent@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000006', name: 'No Consent', email: 'noconsent@contoso.com', upn: 'noconsent@contoso.com', xms_edov: true,
      fail: { error: 'access_denied', error_description: 'AADSTS90094: admin approval required (simulated)' } },
    'consentrequired@contoso.com': { oid: 'c0000000-0000-0000-0000-000000000007', name: 'Consent Required', email: 'consentrequired@contoso.com', upn: 'consentrequired@contoso.com', xms_edov: true,
      fail: { error: 'consent_required', error_description: 'AADSTS65001: The user or administrator has not consented to use the application (simulated)' } },
    'admin@contoso.com': { oid: 'c0000000-0000-0000-0000-0000000000ad', name: 'Contoso Admin', email: 'admin@contoso.com', upn: 'admin@contoso.com', xms_edov: true },
  },
  [FABRIKAM]: {
    // An attacker's tenant claiming alice's address: another oid, unverified e-mail domain.
    'alice@contoso.com': { oid: 'f0000000-0000-0000-0000-000000000001', name: 'Alice Fabrikam', email: 'alice@contoso.com', upn: 'alice@contoso.com', xms_edov: false },
    'carol@fabrikam.com': { oid: 'f0000000-0000-0000-0000-000000000002', name: 'Carol Fabrikam', email: 'carol@fabrikam.com', upn: 'carol@fabrikam.com', xms_edov: true },
    'admin@fabrikam.com': { oid: 'f0000000-0000-0000-0000-0000000000ad', name: 'Fabrikam Admin', email: 'admin@fabrikam.com', upn: 'admin@fabrikam.com', xms_edov: true },
  },
  [DECLINING]: {
    'admin@declining.com': { oid: 'd0000000-0000-0000-0000-0000000000ad', name: 'Declining Admin', email: 'admin@declining.com', upn: 'admin@declining.com', xms_edov: true },
  },
};

// Entra's `sub` is pairwise per application: derive it from (tid, oid), so an alias gives the
// same sub and the same person in another tenant gets another one.
const subOf = (tid, oid) => crypto.createHash('sha256').update(`${CLIENT_ID}:${tid}:${oid}`).digest('base64url').slice(0, 43);

function makeProvider(tid) {
  const accounts = ACCOUNTS[tid] || {};
  const prefix = `/${tid}/v2.0`;
  // oidc-provider's `sub` is the accountId, so the hint an alias signed in with is remembered per
  // session (each authorization request gets a fresh session) to fill `preferred_username`.
  const hintBySession = new Map();
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(`http://${HOST}:${PORT}${prefix}`, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: REDIRECT_URIS,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: `test-${tid}` }] },
    cookies: {
      keys: ['test-only-cookie-key'],
      // One host serves every tenant: keep their cookies apart.
      names: { session: `_session_${tid}`, interaction: `_interaction_${tid}`, resume: `_interaction_resume_${tid}` },
    },
    pkce: { required: () => true },
    conformIdTokenClaims: false, // scope claims in the ID token, like Entra
    claims: {
      openid: ['sub', 'tid', 'oid', 'idp', 'acct'],
      profile: ['name', 'preferred_username', 'upn'],
      email: ['email', 'xms_edov'],
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
    async findAccount(ctx, sub, token) {
      const hints = Object.keys(accounts).filter((h) => subOf(tid, accounts[h].oid) === sub);
      if (hints.length === 0) return undefined;
      const remembered = hintBySession.get(token?.sessionUid ?? ctx.oidc?.session?.uid);
      const hint = hints.includes(remembered) ? remembered : hints[0];
      const a = accounts[hint];
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            tid,
            oid: a.oid,
            idp: a.guest ? a.idp : undefined,
            acct: a.guest ? 1 : 0,
            name: a.name,
            preferred_username: hint,
            upn: a.upn,
            email: a.email,
            xms_edov: a.xms_edov,
          };
        },
      };
    },
  });
  provider.on('authorization.success', (ctx) => {
    const hint = ctx.oidc.params?.login_hint;
    if (hint && ctx.oidc.session?.uid) hintBySession.set(ctx.oidc.session.uid, hint);
  });
  return { provider, tid, prefix, accounts };
}
const providers = TENANTS.map(makeProvider);

// Login from login_hint, automatic consent, simulated Entra errors for flagged accounts.
async function autoInteraction(p, req, res) {
  const { prompt, params, session, grantId } = await p.provider.interactionDetails(req, res);
  const hint = params.login_hint;
  const account = p.accounts[hint];
  const finish = (result, merge) => p.provider.interactionFinished(req, res, result, { mergeWithLastSubmission: merge });
  if (!account) {
    return finish({ error: 'access_denied', error_description: `AADSTS50034: The user account ${hint ?? '(no login_hint)'} does not exist in tenant ${p.tid} (simulated)` }, false);
  }
  if (account.fail) return finish(account.fail, false);
  const accountId = subOf(p.tid, account.oid);
  if (prompt.name === 'login') return finish({ login: { accountId } }, false);
  const grant = grantId
    ? await p.provider.Grant.find(grantId)
    : new p.provider.Grant({ accountId: session?.accountId ?? accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  return finish({ consent: { grantId: await grant.save() } }, true);
}

// Microsoft's v2 admin-consent endpoint (not OIDC): GET /<tid>/v2.0/adminconsent.
function adminConsent(tid, url, res) {
  const q = url.searchParams;
  const redirectUri = q.get('redirect_uri');
  if (q.get('client_id') !== CLIENT_ID || !REDIRECT_URIS.includes(redirectUri) || !TENANTS.includes(tid)) {
    res.statusCode = 400;
    return res.end('AADSTS50011/AADSTS700016: unknown client, tenant or redirect_uri (simulated)');
  }
  const back = new URL(redirectUri);
  const scope = q.get('scope');
  if (!scope) {
    back.searchParams.set('error', 'invalid_request');
    back.searchParams.set('error_description', "AADSTS900144: The request body must contain the following parameter: 'scope'.");
  } else if (tid === DECLINING) {
    back.searchParams.set('admin_consent', 'True');
    back.searchParams.set('error', 'consent_required');
    back.searchParams.set('error_description', 'AADSTS65004: User declined to consent to access the app.');
  } else {
    back.searchParams.set('admin_consent', 'True');
    back.searchParams.set('tenant', tid);
    back.searchParams.set('scope', scope);
  }
  if (q.has('state')) back.searchParams.set('state', q.get('state'));
  res.statusCode = 302;
  res.setHeader('Location', back.toString());
  return res.end();
}

// Every authorization request starts with a fresh session, as if in a new browser profile, so the
// login_hint always decides (oidc-provider would otherwise keep the signed-in account, or answer a
// different one with a log-out form). The browser's old session cookie then points nowhere.
async function endSession(p, req) {
  const name = `_session_${p.tid}=`;
  const cookie = (req.headers.cookie || '').split(';').map((c) => c.trim()).find((c) => c.startsWith(name));
  if (!cookie) return;
  const session = await p.provider.Session.find(decodeURIComponent(cookie.slice(name.length)));
  if (session) await session.destroy();
}

http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, `http://${HOST}:${PORT}`);
    const consent = url.pathname.match(/^\/([^/]+)\/v2\.0\/adminconsent$/);
    if (consent && req.method === 'GET') {
      return adminConsent(consent[1] === 'organizations' ? CONTOSO : consent[1], url, res);
    }
    const p = providers.find((x) => url.pathname === x.prefix || url.pathname.startsWith(`${x.prefix}/`));
    if (!p) {
      res.statusCode = 404;
      return res.end('unknown tenant');
    }
    if (url.pathname.startsWith(`${p.prefix}/interaction/`)) return await autoInteraction(p, req, res);
    if (url.pathname === `${p.prefix}/auth`) await endSession(p, req);
    req.originalUrl = req.url; // oidc-provider derives its mount path from this
    req.url = req.url.slice(p.prefix.length) || '/';
    return p.provider.callback()(req, res);
  } catch (e) {
    console.error(e);
    res.statusCode = 500;
    return res.end(String(e));
  }
}).listen(PORT, HOST, () => console.log('ready'));

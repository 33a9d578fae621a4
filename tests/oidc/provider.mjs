// A real OpenID provider for gatehouse's tests: panva's OpenID-certified
// oidc-provider (pinned in package.json), served over HTTPS with the test
// CA's certificate. tests/support/oidc.rs starts it with one argument, a
// JSON file:
//   { "port", "issuer", "cert", "key",
//     "clients": [ oidc-provider client metadata ... ],
//     "accounts": { "<login>": { claims ... } } }
// Its development login and consent forms are on (any password signs in as
// the login typed); an account not listed gets <login>@example.com,
// verified. It prints "listening <port>" once it accepts connections, and
// "request <METHOD> <path>" (never the query: it holds codes) as each
// request arrives, so a test can count what was fetched, e.g. its JWKS.
//
// A line "rotate" on stdin rotates the signing key, as a provider does
// (same issuer, same port, same sessions): a new RSA key with a new kid
// signs from then on and comes first in the JWKS, the earlier rotated-in
// keys stay published (the development key it starts with is dropped).
// It prints "rotated <kid>" once requests are served with it.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// jwks undefined: oidc-provider's development key.
const configure = (jwks) => new Provider(config.issuer, {
  jwks,
  clients: config.clients,
  cookies: { keys: ['gatehouse-tests-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups', 'realm_access', 'hd'],
  },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = config.accounts[id] ?? { email: `${id}@example.com`, email_verified: true };
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...claims };
      },
    };
  },
});

let serve;
const use = (provider) => {
  // The dev keystore and interactions say so on every start; the tests know.
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  serve = provider.callback();
};
use(configure(undefined));

// Sessions and grants live in oidc-provider's in-memory adapter, which is
// shared by every Provider of the process: a signed-in browser stays so.
const rotated = [];
const rotate = async () => {
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const kid = `rotated-${rotated.length + 1}-${randomBytes(6).toString('hex')}`;
  rotated.unshift({ ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' });
  use(configure({ keys: structuredClone(rotated) }));
  console.log(`rotated ${kid}`);
};
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'rotate') {
    rotate().catch((err) => console.error('rotate failed', err));
  }
});

const server = https.createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  (req, res) => {
    console.log(`request ${req.method} ${req.url.split('?')[0]}`);
    serve(req, res);
  },
);
server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}

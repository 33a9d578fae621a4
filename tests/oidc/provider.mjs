// A real OpenID provider for gatehouse's tests: panva's OpenID-certified
// oidc-provider (pinned in package.json), served over HTTPS with the test
// CA's certificate. tests/support/oidc.rs starts it with one argument, a
// JSON file:
//   { "port", "issuer", "cert", "key",
//     "clients": [ oidc-provider client metadata ... ],
//     "accounts": { "<login>": { claims ... } } }
// Its development login and consent forms are on (any password signs in as
// the login typed); an account not listed gets <login>@example.com,
// verified. It prints "listening <port>" once it accepts connections.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const provider = new Provider(config.issuer, {
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
// The dev keystore and interactions say so on every start; the tests know.
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = https.createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  provider.callback(),
);
server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}

// A local Unleash server for canarystream's Unleash flag-provider tests, configured from the
// environment:
//   DATABASE_URL            postgres://user@host:port/db (required)
//   UNLEASH_HOST            address to listen on (default 127.0.0.1: never the outside world)
//   UNLEASH_PORT            port (default 4242)
//   UNLEASH_ADMIN_TOKEN     admin API token created on first start, e.g. "*:*.some-secret"
//   UNLEASH_BACKEND_TOKENS  comma-separated backend (client SDK) tokens created on first start,
//                           each "<project>:<environment>.<secret>"
// Unleash creates initial tokens only into an empty token table, so they are fixed for the
// life of the database. No version check and no telemetry leave the machine.
import { start } from 'unleash-server';

function tokens(value, type, name) {
  return (value || '')
    .split(',')
    .map((secret) => secret.trim())
    .filter(Boolean)
    .map((secret) => {
      const [project, rest] = secret.split(':');
      if (rest === undefined || !rest.includes('.')) {
        throw new Error(`token ${name} must look like <project>:<environment>.<secret>`);
      }
      const environment = rest.split('.')[0];
      return { secret, type, projects: [project], environment, tokenName: name };
    });
}

if (!process.env.DATABASE_URL) {
  console.error('server.js: DATABASE_URL is not set');
  process.exit(2);
}
process.env.SEND_TELEMETRY = 'false'; // read by Unleash at start

const initApiTokens = [
  ...tokens(process.env.UNLEASH_ADMIN_TOKEN, 'admin', 'canarystream-admin'),
  ...tokens(process.env.UNLEASH_BACKEND_TOKENS, 'backend', 'canarystream-backend'),
];

try {
  const unleash = await start({
    databaseUrl: process.env.DATABASE_URL,
    db: { ssl: false },
    server: {
      host: process.env.UNLEASH_HOST || '127.0.0.1',
      port: Number.parseInt(process.env.UNLEASH_PORT || '4242', 10),
      gracefulShutdownEnable: true,
      gracefulShutdownTimeout: 1000,
    },
    authentication: { type: 'open-source', createAdminUser: true, initApiTokens },
    versionCheck: { enable: false },
    logLevel: process.env.LOG_LEVEL || 'warn',
  });
  // Unleash's own handlers stop it cleanly on SIGTERM, SIGINT and SIGHUP.
  console.log(`unleash ${unleash.version ?? ''} listening on ${process.env.UNLEASH_PORT || 4242}`);
} catch (error) {
  console.error('server.js: Unleash did not start:', error);
  process.exit(1);
}

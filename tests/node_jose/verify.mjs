// What a Node backend does with an otp approval token: fetch otp's JWKS over HTTP, verify the
// token (EdDSA only, issuer and audience pinned) with the jose package, print the outcome as JSON.
// Usage: node verify.mjs JWKS_URL ISSUER AUDIENCE TOKEN
import { calculateJwkThumbprint, createRemoteJWKSet, jwtVerify } from "jose";

const [url, issuer, audience, token] = process.argv.slice(2);
const keys = createRemoteJWKSet(new URL(url));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer, audience, algorithms: ["EdDSA"] });
  const served = await (await fetch(url)).json();
  const thumbprints = await Promise.all(served.keys.map((jwk) => calculateJwkThumbprint(jwk, "sha256")));
  console.log(JSON.stringify({ valid: true, header: protectedHeader, payload, kids: served.keys.map((k) => k.kid), thumbprints }));
} catch (error) {
  // A refusal is an answer, not a crash: the test reads jose's error code.
  console.log(JSON.stringify({ valid: false, code: error.code ?? String(error) }));
}

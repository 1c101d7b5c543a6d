/** Where the project is: the repository root, and the peer programs the tests launch. */

/** The repository root, with a trailing slash. */
export const ROOT = new URL("../../", import.meta.url).pathname;

/** Python peers in tests/peers/. */
export const PEERS = `${ROOT}tests/peers/`;

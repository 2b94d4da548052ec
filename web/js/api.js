// The REST facade, as the page calls it: same origin (the facade serves the page), a bearer token, and
// errors turned into sentences a person can act on (INTERFACE.md's error table).

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? {};
    this.retryAfter = retryAfter;
  }
}

export class Api {
  constructor(base = "") {
    this.base = base;
    /** {token, userId, expiresAt (ms) or null, dev (minted by /dev/token, so renewable)} */
    this.session = null;
  }

  /** A token the deployment gave the page (`#token=...`); its `sub` names the user. */
  useToken(token) {
    const claims = decodeClaims(token);
    this.session = {
      token,
      userId: claims?.sub ?? "(token)",
      expiresAt: typeof claims?.exp === "number" ? claims.exp * 1000 : null,
      dev: false,
    };
    return this.session;
  }

  /** Signs in as a demo user through the development token endpoint (404 when it is off). */
  async signIn(userId) {
    const response = await fetch(`${this.base}/dev/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ userId }),
    });
    const body = await readBody(response);
    if (!response.ok) throw toError(response, body);
    this.session = { token: body.token, userId: body.userId, expiresAt: Date.parse(body.expiresAt), dev: true };
    return this.session;
  }

  /**
   * No token at all: the facade's `AUTH_MODE=none` (local development) takes the user from the body.
   * With authentication on, every write is then refused 401 and the page says to sign in.
   */
  useUserWithoutToken(userId) {
    this.session = { token: null, userId, expiresAt: null, dev: false };
    return this.session;
  }

  async availability(showtimeId) {
    return this.#call("GET", `/availability?showtimeId=${encodeURIComponent(showtimeId)}`, undefined, false);
  }

  /** One all-or-nothing hold of `seatIds`; the idempotency key makes a retried click safe. */
  async hold(showtimeId, seatIds, idempotencyKey) {
    const body = { showtimeId, seatIds, ...this.#userWithoutToken() };
    return this.#call("POST", "/hold", body, true, { "Idempotency-Key": idempotencyKey });
  }

  async release(holdId) {
    return this.#call("POST", "/release", { holdId, ...this.#userWithoutToken() }, true);
  }

  #userWithoutToken() {
    return this.session && !this.session.token ? { userId: this.session.userId } : {};
  }

  async #call(method, path, body, authenticated, headers = {}) {
    const send = { ...headers };
    if (body !== undefined) send["Content-Type"] = "application/json";
    if (authenticated) {
      if (!this.session) throw new ApiError(401, "UNAUTHENTICATED", "Sign in first.", {});
      await this.#renewIfNeeded();
      if (this.session.token) send.Authorization = `Bearer ${this.session.token}`;
    }
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers: send,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const parsed = await readBody(response);
    if (!response.ok) throw toError(response, parsed);
    return parsed;
  }

  /** A development token is renewed a minute before it expires. */
  async #renewIfNeeded() {
    const session = this.session;
    if (session?.dev && session.expiresAt !== null && session.expiresAt - Date.now() < 60_000) {
      await this.signIn(session.userId);
    }
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: "INTERNAL", message: text.slice(0, 200) } };
  }
}

function toError(response, body) {
  const error = body?.error ?? {};
  const retry = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return new ApiError(
    response.status,
    error.code ?? `HTTP_${response.status}`,
    error.message ?? response.statusText,
    error.details,
    Number.isFinite(retry) ? retry : null,
  );
}

function decodeClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
  } catch {
    return null;
  }
}

/**
 * A refusal in words. `nameOf(seatId)` names a seat as the map shows it. SEAT_UNAVAILABLE is the seed's
 * "Seat unavailable", naming the seats.
 */
export function describeError(error, nameOf = (id) => id) {
  const details = error.details ?? {};
  switch (error.code) {
    case "SEAT_UNAVAILABLE": {
      const seats = Array.isArray(details.seatIds) ? details.seatIds : [];
      return seats.length > 0
        ? `Seat unavailable: ${seats.map(nameOf).join("; ")} ${seats.length === 1 ? "was" : "were"} taken by someone else. Nothing was held.`
        : "Seat unavailable: no suitable seats are free. Nothing was held.";
    }
    case "SEAT_LIMIT_REACHED":
      return `Seat limit reached: you may hold at most ${details.limit ?? "a few"} seats of this showtime at once (you hold ${details.held ?? "some"} already). Release some first. Nothing was held.`;
    case "RATE_LIMITED": {
      const wait = error.retryAfter ?? 1;
      return `Too many requests: please wait ${wait} second${wait === 1 ? "" : "s"} and try again.`;
    }
    case "UNAUTHENTICATED":
      return "Sign in first: choose a demo user (or open the page with your token).";
    case "FORBIDDEN":
    case "HOLD_NOT_OWNED":
      return `Not allowed: ${error.message}`;
    case "UNKNOWN_SEATS": {
      const seats = Array.isArray(details.seatIds) ? details.seatIds : [];
      return `These seats are not in this showtime's seat map: ${seats.map(nameOf).join("; ")}.`;
    }
    case "SHOWTIME_NOT_FOUND":
      return "No seat map for this showtime.";
    case "VALIDATION_FAILED":
      return `The request was refused: ${error.message}`;
    case "SERVICE_UNAVAILABLE":
    case "UPSTREAM_TIMEOUT":
      return "The inventory service is not answering right now: try again in a moment.";
    case "NOT_FOUND":
      return "Not available here.";
    default:
      return `${error.message || "Something went wrong"} (${error.code}).`;
  }
}

// The gateway's WebSocket, kept open: subscribe to one showtime, hand every message to `onMessage`,
// reconnect with back-off after a close (a snapshot then follows the new subscription, and the seat map
// applies it per seat by version), and report the connection's state for the page's indicator.
// An application-level ping every 20 s (browsers cannot send WebSocket pings) finds a dead link: no pong
// within 10 s closes the socket, which reconnects.

export class LiveConnection {
  constructor(url, { onMessage, onStatus }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.showtimeId = null;
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongDeadline = null;
    this.stopped = false;
  }

  /** Follows `showtimeId` (and stops following the previous one). */
  follow(showtimeId) {
    const previous = this.showtimeId;
    this.showtimeId = showtimeId;
    if (this.socket?.readyState === WebSocket.OPEN) {
      if (previous && previous !== showtimeId) this.#send({ type: "unsubscribe", showtimeId: previous });
      this.#send({ type: "subscribe", showtimeId });
      this.onStatus("subscribing");
    } else if (!this.socket) {
      this.#connect();
    }
  }

  /** Closes the socket as a network failure would (tests and the "reconnect" button use it). */
  drop() {
    this.socket?.close(4000, "dropped by the page");
  }

  #connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.onStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.onStatus("offline", String(error));
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      if (this.showtimeId) this.#send({ type: "subscribe", showtimeId: this.showtimeId });
      this.onStatus("subscribing");
      this.#startPings();
    });
    socket.addEventListener("message", (message) => {
      let parsed;
      try {
        parsed = JSON.parse(message.data);
      } catch {
        return;
      }
      if (parsed.type === "pong") {
        this.pongDeadline = null;
        return;
      }
      this.onMessage(parsed);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.#stopPings();
      if (this.stopped) return;
      // 0.5 s, 1 s, 2 s, ... at most 10 s between attempts.
      const delay = Math.min(10_000, 500 * 2 ** this.attempt);
      this.attempt += 1;
      this.onStatus("waiting", delay);
      this.retryTimer = setTimeout(() => this.#connect(), delay);
    });
    // An error is always followed by a close, which does the work.
    socket.addEventListener("error", () => {});
  }

  #send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  #startPings() {
    this.#stopPings();
    this.pingTimer = setInterval(() => {
      if (this.pongDeadline !== null && Date.now() > this.pongDeadline) {
        this.socket?.close(4001, "no pong");
        return;
      }
      if (this.pongDeadline === null) this.pongDeadline = Date.now() + 10_000;
      this.#send({ type: "ping" });
    }, 20_000);
  }

  #stopPings() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.pongDeadline = null;
  }
}

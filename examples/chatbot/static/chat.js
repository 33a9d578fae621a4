// The example chatbot's browser side, behind gatehouse's browser sessions:
// who is signed in comes from gatehouse's /auth/me; a message is posted as
// JSON to the app (a same-origin fetch, so it passes gatehouse's CSRF check),
// and its reply streams back over Server-Sent Events, one token at a time.
// The session cookie is HttpOnly: this script never sees it, the browser
// sends it.
"use strict";

const $ = (id) => document.getElementById(id);
const SIGN_IN = "/auth/login?rd=" + encodeURIComponent(location.pathname);

/** Sends the browser to gatehouse's sign-in page, back here afterwards. */
function signIn(loginUrl) {
  location.assign(loginUrl || SIGN_IN);
}

/** Shows who gatehouse says is signed in. */
async function whoAmI() {
  const res = await fetch("/auth/me", { headers: { accept: "application/json" } });
  if (res.status === 401) {
    signIn();
    return;
  }
  if (!res.ok) {
    throw new Error("/auth/me answered " + res.status);
  }
  const me = await res.json();
  $("who").textContent = me.sub;
  $("user").title = "via " + me.method + ", until " + me.expires_at;
  $("user").hidden = false;
  document.body.dataset.user = me.sub;
}

/** Adds a message to the log; its text element. */
function addMessage(who, text) {
  const item = document.createElement("li");
  item.className = "message " + who;
  const name = document.createElement("span");
  name.className = "from";
  name.textContent = who === "you" ? "You" : "Bot";
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(name, body);
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
  return body;
}

function setStatus(text) {
  $("status").textContent = text;
}

/** Posts `text`; the message id its reply streams under. */
async function post(text) {
  const res = await fetch("/ui/api/messages", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ message: text }),
  });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) {
    signIn(body.login_url);
    return null;
  }
  if (!res.ok) {
    throw new Error("sending failed: " + res.status + " " + (body.error || ""));
  }
  return body.id;
}

/** Streams the reply to message `id` into `target`; resolves when it ends. */
function streamReply(id, target) {
  return new Promise((resolve, reject) => {
    const item = target.parentElement;
    let tokens = 0;
    item.setAttribute("aria-busy", "true");
    const events = new EventSource("/ui/api/messages/" + encodeURIComponent(id) + "/reply");
    events.addEventListener("token", (event) => {
      target.textContent += JSON.parse(event.data).t;
      tokens += 1;
      item.dataset.tokens = String(tokens);
    });
    events.addEventListener("done", () => {
      events.close();
      item.setAttribute("aria-busy", "false");
      item.dataset.done = "yes";
      resolve();
    });
    // A closed or refused stream (signed out meanwhile: 401). EventSource
    // would retry on its own; one reply is one stream, so stop here.
    events.addEventListener("error", () => {
      events.close();
      item.setAttribute("aria-busy", "false");
      reject(new Error("the reply stream was interrupted"));
    });
  });
}

async function onSubmit(event) {
  event.preventDefault();
  const input = $("message");
  const text = input.value.trim();
  if (!text) {
    return;
  }
  input.value = "";
  $("send").disabled = true;
  setStatus("");
  try {
    addMessage("you", text);
    const id = await post(text);
    if (id !== null) {
      await streamReply(id, addMessage("bot", ""));
    }
  } catch (err) {
    setStatus(err.message);
  } finally {
    $("send").disabled = false;
    input.focus();
  }
}

$("composer").addEventListener("submit", onSubmit);
whoAmI().catch((err) => setStatus(err.message));

// The notification inbox every app has: a button in the top bar with the unread count, opening
// the account's notices newest first, read ones greyed, each marked read by a tap. A notice is
// worded from its kind in the reader's language (the server's title is bilingual prose); an
// operator's message is a person's words, shown as written.
import { hasText, t } from "./i18n.js";
import { act, fill, h, toast, errorText, when } from "./ui.js";

const PAGE = 50;
const POLL_MS = 30_000;  // the count between pushes of the app's own socket; the list reloads when opened

/** A notice's title in the reader's language, from its kind. */
export function noticeTitle(n) {
  return hasText(`inbox.kind.${n.kind}`) ? t(`inbox.kind.${n.kind}`) : t("inbox.kind.other");
}

/** Mounts the inbox button before `anchor`. `canMarkRead`: auditors never write, not even read
 * marks. `orderHref(id)`: where a notice about an order leads, in apps that show orders. */
export function mountInbox(anchor, api, { canMarkRead = true, orderHref = null } = {}) {
  const badge = h("span", { class: "inbox-count hidden", id: "inbox-count", "aria-hidden": "true" });
  const button = h("button", { type: "button", id: "inbox-open" }, h("span", { class: "inbox-label" }), badge);
  anchor.before(button);
  let unread = 0;
  let more = false;
  let dialog = null;

  function label() {
    button.querySelector(".inbox-label").textContent = t("inbox.title");
    badge.textContent = more ? `${unread}+` : String(unread);
    badge.classList.toggle("hidden", unread === 0);
    button.setAttribute("aria-label", unread ? t("inbox.buttonUnread", { n: badge.textContent }) : t("inbox.title"));
  }

  async function count() {
    const page = await api.get(`/v1/notifications?unread=true&limit=200`);
    unread = page.data.length;
    more = Boolean(page.next_cursor);
    label();
  }

  function item(n, list) {
    const read = Boolean(n.read_at);
    const orderId = n.payload?.order_id;
    const mark = canMarkRead && !read ? h("button", { type: "button", class: "inbox-read" }, t("inbox.markRead")) : null;
    mark?.addEventListener("click", async () => {
      if (await act(mark, null, () => api.post(`/v1/notifications/${n.id}/read`, {}))) {
        n.read_at = new Date().toISOString();
        list.replaceChild(item(n, list), list.querySelector(`[data-id="${n.id}"]`));
        await count();
      }
    });
    return h("li", { class: read ? "inbox-item read" : "inbox-item", dataset: { id: n.id, kind: n.kind, read: String(read) } },
      h("strong", {}, noticeTitle(n)), " ", h("span", { class: `pill ${read ? "" : "warn"}` }, t(read ? "inbox.read" : "inbox.unread")),
      n.kind === "message" && n.body ? h("p", { class: "inbox-body" }, n.body) : null,
      h("div", { class: "muted" }, when(n.created_at),
        orderId && orderHref ? [" · ", h("a", { href: orderHref(orderId), class: "inbox-order" }, t("inbox.openOrder"))] : null),
      mark ? h("div", { class: "actions" }, mark) : null);
  }

  async function open() {
    dialog?.close();
    dialog = h("dialog", { class: "card inbox", id: "inbox", "aria-labelledby": "inbox-h" });
    dialog.addEventListener("close", () => { dialog.remove(); dialog = null; });
    const close = h("button", { type: "button", id: "inbox-close" }, t("inbox.close"));
    close.addEventListener("click", () => dialog.close());
    const list = h("ul", { class: "plain", id: "inbox-list" });
    const status = h("p", { class: "muted", role: "status" }, t("inbox.loading"));
    fill(dialog, h("div", { class: "inbox-head" }, h("h2", { id: "inbox-h" }, t("inbox.title")), close), status, list);
    document.body.append(dialog);
    dialog.showModal();
    // A link to an order closes the inbox on the way there.
    list.addEventListener("click", (event) => { if (event.target.closest("a.inbox-order")) dialog.close(); });
    try {
      const page = await api.get(`/v1/notifications?limit=${PAGE}`);
      status.textContent = page.data.length ? "" : t("inbox.empty");
      fill(list, page.data.map((n) => item(n, list)));
      await count();
    } catch (error) {
      status.className = "error";
      status.textContent = errorText(error);
    }
  }

  button.addEventListener("click", open);
  const refresh = () => count().catch(() => {});  // the badge only: a failed poll leaves the last count
  setInterval(refresh, POLL_MS);
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") refresh(); });
  label();
  refresh();
  return {
    /** Re-words the button (and the open list) after a language change. */
    rerender() {
      label();
      if (dialog) open().catch((error) => toast(errorText(error)));
    },
  };
}

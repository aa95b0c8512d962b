// The partner portal's script. Plain JS, no library, no other origin (the page's CSP allows none).
// Everything a server or a visitor supplied is written with textContent or as an attribute value, never as
// HTML. The API key lives in this tab's sessionStorage only: never in a URL, a cookie or a log line.
"use strict";

(function () {
  const KEY_STORAGE = "portal.apiKey";
  const SVG = "http://www.w3.org/2000/svg";

  // The API's base URL: this page is <base>/portal (a stage path, or a custom domain's base path).
  const apiBase = window.location.origin + window.location.pathname.replace(/\/portal\/?$/, "");
  const portalBase = apiBase + "/portal";

  let config = null;
  // One Idempotency-Key per signup attempt: a retry of the same form sends the same key, a changed form a new one.
  let attempt = null;

  const $ = (id) => document.getElementById(id);

  function show(element, visible) {
    element.hidden = !visible;
  }

  function say(element, text) {
    element.textContent = text;
    show(element, Boolean(text));
  }

  function randomUuid() {
    if (window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function number(value) {
    return new Intl.NumberFormat("en").format(value);
  }

  function periodWord(period) {
    return { DAY: "day", WEEK: "week", MONTH: "month" }[period] || String(period).toLowerCase();
  }

  function when(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) {
      return String(iso);
    }
    return `${date.toLocaleString("en", { dateStyle: "medium", timeStyle: "short" })} (${iso.replace(/\.\d+Z$/, "Z")})`;
  }

  function isoMinute(date) {
    return date.toISOString().replace(/:\d\d\.\d+Z$/, "Z");
  }

  // ------------------------------------------------------------------ views
  function route() {
    takeRecoveryToken();
    const wanted = window.location.hash.replace("#", "") || "signup";
    const views = Array.from(document.querySelectorAll("[data-view]"));
    const current = views.some((view) => view.dataset.view === wanted) ? wanted : "signup";
    for (const view of views) {
      show(view, view.dataset.view === current);
    }
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === current) {
        link.setAttribute("aria-current", "page");
      } else {
        link.removeAttribute("aria-current");
      }
    }
    if (current === "usage") {
      const stored = window.sessionStorage.getItem(KEY_STORAGE);
      if (stored && !$("usage-key").value) {
        $("usage-key").value = stored;
        loadUsage();
      }
    }
  }

  // ------------------------------------------------------------------ the deployment's tiers
  async function loadConfig() {
    try {
      const answer = await fetch(`${portalBase}/config.json`, { headers: { Accept: "application/json" } });
      if (!answer.ok) {
        throw new Error(`HTTP ${answer.status}`);
      }
      config = await answer.json();
    } catch (error) {
      say($("load-error"), "The portal could not load this deployment's tiers. Reload the page to try again.");
      $("signup-submit").disabled = true;
      return;
    }
    renderTiers(config.tiers);
    show($("alert-option"), Boolean(config.alert_emails));
    show($("recover-nav"), Boolean(config.key_recovery));
  }

  function renderTiers(tiers) {
    const options = $("tier-options");
    options.replaceChildren();
    tiers.forEach((tier, index) => {
      const id = `tier-${tier.name}`;
      const box = document.createElement("div");
      box.className = "tier";
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "tier";
      radio.id = id;
      radio.value = tier.name;
      radio.checked = index === 0;
      radio.setAttribute("aria-describedby", `${id}-limits`);
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = tier.name;
      const facts = document.createElement("ul");
      facts.id = `${id}-limits`;
      const limits = tier.limits;
      const lines = [
        `${number(limits.quota_limit)} requests per ${periodWord(limits.quota_period)}`,
        limits.token_budget > 0
          ? `${number(limits.token_budget)} tokens per ${periodWord(limits.quota_period)}`
          : "no token limit",
        `up to ${number(limits.rate_limit)} requests per second (bursts of ${number(limits.burst_limit)})`,
        ...(limits.chat_completions
          ? [`chat completions up to ${number(limits.chat_completions.rate_limit)} per second`]
          : []),
        `models: ${tier.models.join(", ")}`,
      ];
      for (const line of lines) {
        const item = document.createElement("li");
        item.textContent = line;
        facts.append(item);
      }
      const text = document.createElement("div");
      text.append(label, facts);
      box.append(radio, text);
      options.append(box);
    });
  }

  // ------------------------------------------------------------------ sign up
  function signupBody() {
    const form = $("signup-form");
    const body = { name: form.elements.name.value.trim(), email: form.elements.email.value.trim() };
    const tier = form.querySelector("input[name=tier]:checked");
    if (tier) {
      body.tier = tier.value;
    }
    if (config && config.alert_emails) {
      body.alert_emails = $("signup-alerts").checked;
    }
    return body;
  }

  function formProblem(body) {
    if (!body.name) {
      return ["signup-name", "Enter your name or your company's."];
    }
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(body.email)) {
      return ["signup-email", "Enter an email address, like dev@example.com."];
    }
    return null;
  }

  function errorText(status, payload) {
    const error = payload && payload.error;
    if (error && typeof error.message === "string") {
      const details = Array.isArray(error.details)
        ? error.details.map((detail) => `${detail.field}: ${detail.message}`).join("; ")
        : "";
      return details ? `${error.message} (${details})` : error.message;
    }
    if (payload && typeof payload.message === "string") {
      return status === 429 ? "Too many signups right now: try again in a few seconds." : payload.message;
    }
    return `The request failed (HTTP ${status}). Try again.`;
  }

  async function signUp(event) {
    event.preventDefault();
    const errorBox = $("signup-error");
    say(errorBox, "");
    const body = signupBody();
    const problem = formProblem(body);
    for (const id of ["signup-name", "signup-email"]) {
      $(id).removeAttribute("aria-invalid");
    }
    if (problem) {
      $(problem[0]).setAttribute("aria-invalid", "true");
      say(errorBox, problem[1]);
      $(problem[0]).focus();
      return;
    }
    const text = JSON.stringify(body);
    if (!attempt || attempt.body !== text) {
      attempt = { body: text, key: randomUuid() };
    }
    const button = $("signup-submit");
    button.disabled = true;
    button.textContent = "Getting your key…";
    let answer;
    let payload = null;
    try {
      answer = await fetch(`${apiBase}/signup`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": attempt.key },
        body: text,
      });
      payload = await answer.json().catch(() => null);
    } catch (error) {
      say(errorBox, "Could not reach the API. Check your connection and press the button again.");
      return;
    } finally {
      button.disabled = false;
      button.textContent = "Get my key";
    }
    if (answer.status === 201 && payload && payload.api_key) {
      attempt = null;
      showKey(payload, body);
    } else if (answer.status === 202) {
      attempt = null;
      show($("signup-form"), false);
      show($("signup-pending"), true);
    } else {
      const retry = answer.headers.get("Retry-After");
      const suffix = retry ? ` You can retry in ${retry} s.` : "";
      say(errorBox, errorText(answer.status, payload) + suffix);
    }
  }

  function showKey(issued, asked) {
    show($("signup-form"), false);
    $("issued-key").value = issued.api_key;
    $("issued-partner").textContent = issued.partner_id;
    $("issued-tier").textContent = issued.tier;
    $("issued-name").textContent = asked.name;
    const confirmation = {
      sent: "We emailed you a link: open it to receive quota alerts.",
      unavailable: "Quota alert emails are not available right now.",
    }[issued.email_confirmation];
    say($("issued-confirmation"), confirmation || "");
    $("snippet-curl").textContent = curlSnippet(issued.api_key);
    $("snippet-python").textContent = pythonSnippet(issued.api_key);
    show($("signup-result"), true);
    $("result-title").focus();
  }

  function curlSnippet(key) {
    return [
      `API_URL='${apiBase}'`,
      `API_KEY='${key}'`,
      'curl -s "$API_URL/v1/chat/completions" -H "Authorization: Bearer $API_KEY" \\',
      "  -H 'Content-Type: application/json' \\",
      `  -d '{"model": "${firstModel()}", "messages": [{"role": "user", "content": "Hello"}]}'`,
    ].join("\n");
  }

  function pythonSnippet(key) {
    return [
      "from openai import OpenAI",
      "",
      `client = OpenAI(base_url="${apiBase}/v1", api_key="${key}")`,
      "reply = client.chat.completions.create(",
      `    model="${firstModel()}", messages=[{"role": "user", "content": "Hello"}]`,
      ")",
      "print(reply.choices[0].message.content)",
    ].join("\n");
  }

  function firstModel() {
    const tier = config && config.tiers.find((item) => item.name === $("issued-tier").textContent);
    const chat = tier && tier.models.find((name) => !name.toLowerCase().includes("embed"));
    return chat || "MODEL";
  }

  async function copyKey() {
    const field = $("issued-key");
    try {
      await navigator.clipboard.writeText(field.value);
      $("copy-status").textContent = "Copied.";
    } catch (error) {
      field.select();
      $("copy-status").textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
  }

  function goToUsage() {
    window.sessionStorage.setItem(KEY_STORAGE, $("issued-key").value);
    $("usage-key").value = "";
    window.location.hash = "#usage";
  }

  // ------------------------------------------------------------------ my usage
  async function loadUsage(event) {
    if (event) {
      event.preventDefault();
    }
    const errorBox = $("usage-error");
    say(errorBox, "");
    const key = $("usage-key").value.trim();
    if (!key) {
      $("usage-key").setAttribute("aria-invalid", "true");
      say(errorBox, "Paste your API key.");
      $("usage-key").focus();
      return;
    }
    $("usage-key").removeAttribute("aria-invalid");
    window.sessionStorage.setItem(KEY_STORAGE, key);
    const button = $("usage-submit");
    button.disabled = true;
    let answer;
    let payload = null;
    try {
      answer = await fetch(`${apiBase}/v1/usage`, { headers: { Authorization: `Bearer ${key}` } });
      payload = await answer.json().catch(() => null);
    } catch (error) {
      say(errorBox, "Could not reach the API. Check your connection and try again.");
      return;
    } finally {
      button.disabled = false;
    }
    if (answer.status === 200 && payload) {
      renderUsage(payload);
      return;
    }
    show($("usage-result"), false);
    if (answer.status === 403 && payload && payload.message === "Forbidden") {
      say(errorBox, "This key is not valid (or it was disabled). Check that you pasted all of it.");
    } else if (answer.status === 429 && payload && payload.message === "Limit Exceeded") {
      say(errorBox, "Your request quota for this period is used up, so your usage cannot be read until it resets.");
    } else {
      const error = payload && payload.error;
      say(errorBox, error && error.message ? error.message : errorText(answer.status, payload));
    }
  }

  function forgetKey() {
    window.sessionStorage.removeItem(KEY_STORAGE);
    $("usage-key").value = "";
    show($("usage-result"), false);
    say($("usage-error"), "");
    $("usage-key").focus();
  }

  function renderUsage(usage) {
    const requests = usage.requests;
    const tokens = usage.tokens;
    const period = periodWord(usage.period.quota_period);
    $("usage-tier").textContent = usage.tier;
    $("usage-requests").textContent =
      `${number(requests.used)} of ${number(requests.limit)} (${number(requests.remaining)} left)`;
    $("usage-tokens").textContent =
      tokens.budget === null || tokens.budget === 0
        ? `${number(tokens.used)} (no token limit)`
        : `${number(tokens.used)} of ${number(tokens.budget)} (${number(tokens.remaining)} left)`;
    const chat = usage.throttle.chat_completions;
    $("usage-throttle").textContent =
      `${number(usage.throttle.rate_limit)} requests per second, bursts of ${number(usage.throttle.burst_limit)}` +
      (chat ? `; chat completions ${number(chat.rate_limit)} per second, bursts of ${number(chat.burst_limit)}` : "");
    $("usage-reset").textContent = `${when(usage.period.resets_at)}, every ${period}`;
    const projection = projectedExhaustion(usage);
    $("usage-projection").textContent = projection.text;
    drawChart(usage, projection);
    renderUpgrades(usage.tier);
    show($("usage-result"), true);
  }

  // When the quota or the token budget runs out at the pace of the period so far (whichever comes first).
  function projectedExhaustion(usage) {
    const start = Date.parse(usage.period.start);
    const reset = Date.parse(usage.period.resets_at);
    const now = Date.parse(usage.as_of);
    const elapsed = Math.max(now - start, 60 * 1000);
    const candidates = [];
    const measures = [
      ["requests", usage.requests.used, usage.requests.limit],
      ["tokens", usage.tokens.used, usage.tokens.budget],
    ];
    for (const [what, used, limit] of measures) {
      if (!limit || used <= 0) {
        continue;
      }
      const at = used >= limit ? now : now + ((limit - used) * elapsed) / used;
      candidates.push({ what, at });
    }
    candidates.sort((a, b) => a.at - b.at);
    const first = candidates[0];
    if (!first || first.at >= reset) {
      return { text: "you will not run out before the period resets.", at: null, what: null };
    }
    if (first.at <= now) {
      return { text: `your ${first.what} are used up until the reset.`, at: now, what: first.what };
    }
    return {
      text: `your ${first.what} run out around ${when(isoMinute(new Date(first.at)))}.`,
      at: first.at,
      what: first.what,
    };
  }

  function cumulativeRequests(usage) {
    // The series' buckets (if the API sends them) give the shape; the total used gives the last point.
    const start = Date.parse(usage.period.start);
    const now = Date.parse(usage.as_of);
    const points = [[start, 0]];
    const series = usage.series && Array.isArray(usage.series.points) ? usage.series.points : [];
    const bucket = usage.series && usage.series.bucket === "day" ? 86400000 : 3600000;
    let total = 0;
    for (const point of series) {
      const at = Date.parse(point.start);
      points.push([Math.max(at, start), total]);
      total += point.requests;
      points.push([Math.min(at + bucket, now), total]);
    }
    points.push([now, Math.max(total, usage.requests.used)]);
    return points;
  }

  function svg(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [attribute, value] of Object.entries(attributes)) {
      element.setAttribute(attribute, String(value));
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  function drawChart(usage, projection) {
    const width = 640;
    const height = 260;
    const pad = { left: 56, right: 16, top: 16, bottom: 40 };
    const start = Date.parse(usage.period.start);
    const reset = Date.parse(usage.period.resets_at);
    const now = Date.parse(usage.as_of);
    const limit = usage.requests.limit;
    const points = cumulativeRequests(usage);
    const used = points[points.length - 1][1];
    const elapsed = Math.max(now - start, 60 * 1000);
    const projectedAtReset = used + (used * (reset - now)) / elapsed;
    const top = Math.max(limit, Math.min(projectedAtReset, limit * 1.5), used, 1);
    const x = (at) => pad.left + ((at - start) / (reset - start)) * (width - pad.left - pad.right);
    const y = (value) => height - pad.bottom - (value / top) * (height - pad.top - pad.bottom);

    const title = `Requests used this ${periodWord(usage.period.quota_period)}: ${number(used)} of ${number(limit)}`;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title" });
    chart.append(svg("title", { id: "chart-title" }, title));
    for (const fraction of [0.25, 0.5, 0.75, 1]) {
      chart.append(svg("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(top * fraction), y2: y(top * fraction) }));
      chart.append(svg("text", { x: pad.left - 6, y: y(top * fraction) + 4, "text-anchor": "end" }, number(Math.round(top * fraction))));
    }
    chart.append(svg("line", { class: "axis", x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom }));
    chart.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom }));
    chart.append(svg("line", { class: "limit", x1: pad.left, x2: width - pad.right, y1: y(limit), y2: y(limit) }));
    chart.append(svg("text", { class: "limit-label", x: width - pad.right, y: y(limit) - 6, "text-anchor": "end" }, `quota ${number(limit)}`));
    const path = points.map(([at, value], index) => `${index ? "L" : "M"}${x(at).toFixed(1)},${y(value).toFixed(1)}`).join(" ");
    chart.append(svg("path", { class: "used", d: path }));
    if (used > 0 && now < reset) {
      const endAt = projection.at && projection.what === "requests" ? projection.at : reset;
      const endValue = Math.min(used + (used * (endAt - now)) / elapsed, top);
      chart.append(svg("path", { class: "projected", d: `M${x(now).toFixed(1)},${y(used).toFixed(1)} L${x(endAt).toFixed(1)},${y(endValue).toFixed(1)}` }));
    }
    const axisLabel = (at) => new Date(at).toLocaleString("en", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    chart.append(svg("text", { x: pad.left, y: height - 14, "text-anchor": "start" }, axisLabel(start)));
    chart.append(svg("text", { x: width - pad.right, y: height - 14, "text-anchor": "end" }, `reset ${axisLabel(reset)}`));
    $("usage-chart").replaceChildren(chart);
    $("usage-chart-caption").textContent =
      `${title}. Solid line: requests so far; dashed line: the same pace until the reset; red line: the quota.`;
  }

  function renderUpgrades(tier) {
    const list = $("upgrade-links");
    list.replaceChildren();
    const offers = (config ? config.upgrades : []).filter((offer) => offer.tier !== tier);
    for (const offer of offers) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.className = "button";
      link.href = offer.url;
      link.rel = "noopener noreferrer";
      link.textContent = `Upgrade to ${offer.tier}`;
      item.append(link);
      list.append(item);
    }
    show($("upgrades"), offers.length > 0);
  }

  // ------------------------------------------------------------------ lost-key recovery
  // The emailed link is <portal>#recover=<token>: a fragment never reaches a server, and the key is issued only
  // when the visitor presses the button (a mail scanner that opens the link issues nothing). The token is taken
  // out of the address bar at once and kept in memory only.
  let recoveryToken = null;

  function takeRecoveryToken() {
    const match = /^#recover=([A-Za-z0-9_-]{16,128})$/.exec(window.location.hash);
    if (!match) {
      return;
    }
    recoveryToken = match[1];
    window.history.replaceState(null, "", `${window.location.pathname}#recover`);
    say($("recover-status"), "");
    say($("recover-error"), "");
    show($("recover-form"), false);
    show($("recover-result"), false);
    show($("recover-confirm"), true);
  }

  async function requestRecovery(event) {
    event.preventDefault();
    say($("recover-error"), "");
    say($("recover-status"), "");
    const address = $("recover-email").value.trim();
    if (!/^[^@\s]+@[^@\s]+$/.test(address)) {
      $("recover-email").setAttribute("aria-invalid", "true");
      say($("recover-error"), "Enter the email address you signed up with.");
      $("recover-email").focus();
      return;
    }
    $("recover-email").removeAttribute("aria-invalid");
    const button = $("recover-submit");
    button.disabled = true;
    try {
      const answer = await fetch(`${portalBase}/recover`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email: address }),
      });
      const payload = await answer.json().catch(() => null);
      if (answer.status === 202 && payload && typeof payload.message === "string") {
        say($("recover-status"), payload.message);
      } else {
        say($("recover-error"), errorText(answer.status, payload));
      }
    } catch (error) {
      say($("recover-error"), "Could not reach the API. Check your connection and try again.");
    } finally {
      button.disabled = false;
    }
  }

  async function recoverKey() {
    say($("recover-error"), "");
    const button = $("recover-key-submit");
    button.disabled = true;
    try {
      const answer = await fetch(`${portalBase}/recover/key`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: recoveryToken || "" }),
      });
      const payload = await answer.json().catch(() => null);
      if (answer.status === 200 && payload && payload.api_key) {
        recoveryToken = null;
        show($("recover-confirm"), false);
        $("recovered-key").value = payload.api_key;
        $("recovered-partner").textContent = payload.partner_id;
        show($("recover-result"), true);
        $("recover-result-title").focus();
      } else {
        say($("recover-error"), errorText(answer.status, payload));
        show($("recover-confirm"), false);
        show($("recover-form"), true);
      }
    } catch (error) {
      say($("recover-error"), "Could not reach the API. Check your connection and press the button again.");
    } finally {
      button.disabled = false;
    }
  }

  async function copyRecoveredKey() {
    const field = $("recovered-key");
    try {
      await navigator.clipboard.writeText(field.value);
      $("copy-recovered-status").textContent = "Copied.";
    } catch (error) {
      field.select();
      $("copy-recovered-status").textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
  }

  // ------------------------------------------------------------------ wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("signup-form").addEventListener("submit", signUp);
    $("copy-key").addEventListener("click", copyKey);
    $("go-usage").addEventListener("click", goToUsage);
    $("usage-form").addEventListener("submit", loadUsage);
    $("usage-forget").addEventListener("click", forgetKey);
    $("recover-form").addEventListener("submit", requestRecovery);
    $("recover-key-submit").addEventListener("click", recoverKey);
    $("copy-recovered-key").addEventListener("click", copyRecoveredKey);
    window.addEventListener("hashchange", route);
    loadConfig().then(route);
  });
})();

/* nuqi shared browser helpers (plain ES2017, no dependencies, no build step).
 *
 * Safe rendering only: every server string goes through textContent / setAttribute,
 * never innerHTML.  Exposed as the global `Nuqi`.
 */
(function (global) {
  "use strict";

  // Stage names and the anger scale come from the service (GET /v1/stages, read from the stage rules):
  // loadScale() fills them in place before a page starts.  Until then (or if it fails) names read "阶段 N".
  var STAGE_NAMES = [];
  var SCALE = { max: 1, rise: {}, bands: [] };
  var SEVERITY_ZH = { info: "提示", warning: "警告", critical: "紧急" };
  var KIND_ZH = { stage_rise: "阶段上升", sustained_anger: "持续愤怒" };
  var SVG_NS = "http://www.w3.org/2000/svg";

  var params = new URLSearchParams(global.location.search);
  var apiKey = params.get("api_key") || "";

  function clampLevel(level) {
    var n = Number(level);
    if (!isFinite(n)) return null;
    return Math.max(0, Math.min(6, Math.round(n)));
  }

  function stageName(level, name) {
    if (name) return String(name);
    var l = clampLevel(level);
    return l === null ? "—" : STAGE_NAMES[l] || "阶段 " + l;
  }

  /** Load the stage names and the anger scale of the stage rules (GET /v1/stages). Never rejects. */
  function loadScale() {
    return api("/v1/stages", { timeoutMs: 8000 }).then(function (r) {
      (r.stages || []).forEach(function (s) { STAGE_NAMES[s.level] = s.name; });
      SCALE.max = Number(r.gauge_max) > 0 ? Number(r.gauge_max) : 1;
      SCALE.rise = r.rise || {};
      SCALE.bands = Array.isArray(r.bands) ? r.bands : [];
      return SCALE;
    }, function () { return SCALE; });
  }

  /** The stage colour level of a fused anger value on the rules' scale (the band it falls in). */
  function angerLevel(x) {
    var n = Number(x), bands = SCALE.bands;
    if (!isFinite(n) || !bands.length) return 0;
    for (var i = 0; i < bands.length; i++) if (n < bands[i].to) return bands[i].level;
    return bands[bands.length - 1].level;
  }

  /** Position of a fused anger value on the gauge, 0..1 (the gauge ends at the scale's max). */
  function angerFraction(x) {
    var n = Number(x);
    return isFinite(n) ? Math.max(0, Math.min(1, n / (SCALE.max || 1))) : 0;
  }

  /** Build an element: el("div", {class: "x", text: "y", dataset: {a: 1}, on: {click: fn}}, [children]) */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    applyAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    applyAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function applyAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else if (k === "dataset") Object.keys(v).forEach(function (d) { node.dataset[d] = String(v[d]); });
      else if (k === "on") Object.keys(v).forEach(function (e) { node.addEventListener(e, v[e]); });
      else node.setAttribute(k, v === true ? "" : String(v));
    });
  }

  function append(node, children) {
    if (children === null || children === undefined) return;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
  }

  function setText(node, value) {
    if (node) node.textContent = value === null || value === undefined ? "" : String(value);
  }

  /** A stage badge: coloured pill "3 显化抱怨". */
  function stageBadge(level, name, extraClass) {
    var l = clampLevel(level);
    return el("span", {
      class: "badge lv-" + (l === null ? "none" : l) + (extraClass ? " " + extraClass : ""),
      title: l === null ? "" : "阶段 " + l,
    }, [el("span", { class: "badge-lv", text: l === null ? "–" : l }), el("span", { class: "badge-name", text: stageName(l, name) })]);
  }

  /** fetch() against the service with the optional API key; JSON in and out; throws ApiError. */
  function ApiError(status, message, body) {
    this.name = "ApiError";
    this.status = status;
    this.message = message;
    this.body = body;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function api(path, opts) {
    opts = opts || {};
    var headers = { Accept: "application/json" };
    if (apiKey) headers["X-API-Key"] = apiKey;
    var init = { method: opts.method || "GET", headers: headers, cache: "no-store", signal: opts.signal };
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    }
    var timer = null;
    if (opts.timeoutMs && !opts.signal && global.AbortController) {
      var ctl = new AbortController();
      init.signal = ctl.signal;
      timer = setTimeout(function () { ctl.abort(); }, opts.timeoutMs);
    }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (txt) {
        if (timer) clearTimeout(timer);
        var body = null;
        try { body = txt ? JSON.parse(txt) : null; } catch (e) { body = null; }
        if (!r.ok) {
          var msg = body && body.error && body.error.message ? body.error.message : "HTTP " + r.status;
          throw new ApiError(r.status, msg, body);
        }
        return body;
      });
    }, function (err) {
      if (timer) clearTimeout(timer);
      throw new ApiError(0, err && err.name === "AbortError" ? "请求超时" : "无法连接服务", null);
    });
  }

  /** Query string from an object, skipping empty values. */
  function qs(obj) {
    var p = new URLSearchParams();
    Object.keys(obj).forEach(function (k) {
      var v = obj[k];
      if (v !== null && v !== undefined && v !== "") p.set(k, String(v));
    });
    var s = p.toString();
    return s ? "?" + s : "";
  }

  function fmtClock(seconds) {
    var s = Number(seconds);
    if (!isFinite(s) || s < 0) return "--:--";
    s = Math.floor(s);
    var m = Math.floor(s / 60), r = s % 60;
    return (m < 10 ? "0" : "") + m + ":" + (r < 10 ? "0" : "") + r;
  }

  function fmtAnger(x) {
    var n = Number(x);
    return x === null || x === undefined || !isFinite(n) ? "—" : n.toFixed(2);
  }

  function fmtWallTime(epochS) {
    var d = epochS ? new Date(epochS * 1000) : new Date();
    return d.toLocaleTimeString("zh-CN", { hour12: false });
  }

  /** Inline SVG sparkline of [[t, value], ...] on the 0..opts.max scale (default: the anger scale's max),
   *  threshold guide at `guide` (default: the anger of 显化抱怨, rise[3]). */
  function sparkline(points, opts) {
    opts = opts || {};
    var w = opts.width || 120, h = opts.height || 28, pad = 2;
    var max = opts.max || SCALE.max || 1;
    var guide = opts.guide !== undefined ? opts.guide : SCALE.rise[3];
    if (guide !== undefined) guide = Math.min(1, guide / max);
    var root = svg("svg", { class: "spark", width: w, height: h, viewBox: "0 0 " + w + " " + h,
                            role: "img", "aria-label": opts.label || "怒气趋势" });
    var pts = (points || []).filter(function (p) { return Array.isArray(p) && isFinite(p[0]) && isFinite(p[1]); });
    if (guide !== undefined) {
      var gy = pad + (1 - guide) * (h - 2 * pad);
      root.appendChild(svg("line", { class: "spark-guide", x1: 0, x2: w, y1: gy.toFixed(1), y2: gy.toFixed(1) }));
    }
    if (pts.length === 0) {
      root.appendChild(svg("text", { class: "spark-empty", x: w / 2, y: h / 2 + 4, "text-anchor": "middle", text: "无数据" }));
      return root;
    }
    var t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    var span = t1 - t0 || 1;
    var xy = pts.map(function (p) {
      var x = pts.length === 1 ? w - pad : pad + ((p[0] - t0) / span) * (w - 2 * pad);
      var v = Math.max(0, Math.min(1, p[1] / max));
      return [x, pad + (1 - v) * (h - 2 * pad)];
    });
    var line = xy.map(function (q) { return q[0].toFixed(1) + "," + q[1].toFixed(1); }).join(" ");
    var area = "M" + xy[0][0].toFixed(1) + "," + (h - pad) + " L" + line.split(" ").join(" L") +
               " L" + xy[xy.length - 1][0].toFixed(1) + "," + (h - pad) + " Z";
    root.appendChild(svg("path", { class: "spark-area", d: area }));
    root.appendChild(svg("polyline", { class: "spark-line", points: line }));
    var last = xy[xy.length - 1];
    root.appendChild(svg("circle", { class: "spark-dot", cx: last[0].toFixed(1), cy: last[1].toFixed(1), r: 2.4 }));
    return root;
  }

  global.Nuqi = {
    STAGE_NAMES: STAGE_NAMES, SCALE: SCALE, SEVERITY_ZH: SEVERITY_ZH, KIND_ZH: KIND_ZH,
    loadScale: loadScale, angerLevel: angerLevel, angerFraction: angerFraction,
    params: params, apiKey: apiKey,
    clampLevel: clampLevel, stageName: stageName, el: el, svg: svg, setText: setText, stageBadge: stageBadge,
    api: api, ApiError: ApiError, qs: qs, fmtClock: fmtClock, fmtAnger: fmtAnger, fmtWallTime: fmtWallTime,
    sparkline: sparkline,
  };
})(window);

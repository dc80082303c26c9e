// The board's only script: on each change the server announces, fetch the
// page's live part again and put it in place. No build step, no CDN.
(function () {
  var fragment = document.body.getAttribute('data-fragment');
  if (!fragment || !window.EventSource) { return; }
  var live = document.getElementById('live');
  var pending = false;
  function refresh() {
    if (pending) { return; }
    pending = true;
    fetch(fragment, {cache: 'no-store'}).then(function (r) {
      if (!r.ok) { throw new Error(r.status + ' ' + r.statusText); }
      return r.text();
    }).then(function (html) {
      // Keep the keyboard's place: the link that had the focus gets it
      // back in the new content.
      var focused = document.activeElement;
      var href = focused && live.contains(focused) ? focused.getAttribute('href') : null;
      live.innerHTML = html;
      if (href) {
        var again = live.querySelector('a[href="' + CSS.escape(href) + '"]');
        if (again) { again.focus(); }
      }
      document.body.setAttribute('data-updated', String(Date.now()));
    }).catch(function (e) {
      live.insertAdjacentHTML('afterbegin', '<p class="api-lost">The board does not answer: ' + String(e).replace(/[<>&]/g, '') + '</p>');
    }).finally(function () { pending = false; });
  }
  var es = new EventSource('/events');
  es.addEventListener('change', refresh);
  // A service page's plots: new points for this service only.
  var service = document.body.getAttribute('data-service');
  es.addEventListener('samples', function (e) {
    if (service && e.data === service) { refresh(); }
  });
  es.onerror = function () {
    if (!document.querySelector('.board-lost')) {
      live.insertAdjacentHTML('afterbegin', '<p class="api-lost board-lost">The board does not answer (it stopped?): this page shows the last state it read.</p>');
    }
  };
  es.onopen = function () {
    var lost = document.querySelector('.board-lost');
    if (lost) { lost.remove(); refresh(); }
  };
})();

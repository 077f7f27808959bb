// keyward dashboard: the copy button of a new key, the login link's form
// sent at once, and the organization form's limits opened for a plan
// with custom rates. Everything else works without JavaScript.
"use strict";
(function () {
  var form = document.getElementById("login-link");
  if (form) {
    form.submit();
  }
  var plan = document.getElementById("org-plan");
  var limits = document.getElementById("limits");
  if (plan && limits) {
    plan.addEventListener("change", function () {
      var option = plan.options[plan.selectedIndex];
      if (option && option.getAttribute("data-custom") === "true") {
        limits.open = true;
      }
    });
  }
})();
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) {
    button.textContent = "Select the key and copy it";
    return;
  }
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    button.textContent = "Copied";
  }, function () {
    button.textContent = "Select the key and copy it";
  });
});

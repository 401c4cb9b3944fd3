// Sortable and filterable tables for photdb's pages (no dependencies).
// Click a header to sort (again to reverse); type in #quickfilter to keep matching rows.
(function () {
  "use strict";
  function cellValue(row, i) {
    const c = row.cells[i];
    return c ? c.textContent.trim() : "";
  }
  function sortTable(table, i, th) {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
    th.classList.add(asc ? "asc" : "desc");
    const numeric = rows.every(r => { const v = cellValue(r, i); return v === "" || !isNaN(parseFloat(v)); });
    rows.sort((a, b) => {
      let x = cellValue(a, i), y = cellValue(b, i);
      if (numeric) {
        x = x === "" ? Infinity : parseFloat(x); y = y === "" ? Infinity : parseFloat(y);
        return asc ? x - y : y - x;
      }
      return asc ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(r => body.appendChild(r));
  }
  document.querySelectorAll("table.sortable").forEach(table => {
    table.querySelectorAll("thead th").forEach((th, i) => {
      th.addEventListener("click", () => sortTable(table, i, th));
    });
  });
  const box = document.getElementById("quickfilter");
  if (box) {
    box.addEventListener("input", () => {
      const words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      document.querySelectorAll("table.filterable tbody tr").forEach(r => {
        const text = r.textContent.toLowerCase();
        r.style.display = words.every(w => text.includes(w)) ? "" : "none";
      });
    });
  }
})();

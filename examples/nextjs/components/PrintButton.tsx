'use client';

/** Opens the browser's print dialog ("Save as PDF"); not printed itself. */
export function PrintButton() {
  return (
    <button
      type="button"
      onClick={() => window.print()}
      className="no-print rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white shadow-sm hover:bg-indigo-500"
      data-testid="print"
    >
      Print / save as PDF
    </button>
  );
}

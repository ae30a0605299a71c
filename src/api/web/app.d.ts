// app.js is browser code served as text (imported `with { type: "text" }`), never run by the agent
// (test/api/dashboard-live.test.ts runs it against a fake DOM).
declare const text: string;
export default text;

// app.js is browser code served as text (imported `with { type: "text" }`), never run here.
declare const text: string;
export default text;

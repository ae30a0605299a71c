// Stylesheets are imported as text (`with { type: "text" }`) and served by the API.
declare module "*.css" {
  const text: string;
  export default text;
}
